//! OAuth2 sign-in (authorization code + PKCE S256) with providers from `[[oauth]]`: Google and
//! GitHub presets, any OpenID Connect provider by `issuer` (endpoints from its discovery
//! document), or explicit URLs. Identity comes from the provider's userinfo endpoint with the
//! access token (`sub`/`id`, `email`, `email_verified`), not from an id token: no signature
//! to verify, and the same path serves plain OAuth2 providers such as GitHub.
//!
//! `login` stores the state (hashed, single use, 10 minutes, with the PKCE verifier, the return
//! URL and the guest being upgraded) and also sets it as a short-lived cookie; `callback`
//! needs both to match, so a callback link made by someone else cannot sign this browser in.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use oauth2::basic::BasicClient;
use oauth2::url::Url;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse, TokenUrl,
};
use plaza_actors::accounts::identities::{ProviderSignIn, SaveSignIn, TakeSignIn};
use plaza_actors::sessions::manage::Issue;
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::{attempt, count, meta};
use crate::config::accounts::OAuthProviderConfig;
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::extract::Auth;
use crate::http::resource;
use crate::AppState;

pub const STATE_COOKIE: &str = "plaza_oauth_state";
/// Calls to a provider (token, userinfo, discovery) give up after this long.
pub const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest provider answer read.
pub const MAX_PROVIDER_BODY: usize = 1 << 20;
const STATE_COOKIE_SECS: i64 = 600;

#[derive(Debug, Clone)]
struct Endpoints {
    auth: String,
    token: String,
    userinfo: String,
}

pub struct Provider {
    pub name: String,
    pub display_name: String,
    client_id: String,
    client_secret: Option<String>,
    scopes: Vec<String>,
    /// Set from the config, or found through `issuer` on first use.
    endpoints: tokio::sync::OnceCell<Endpoints>,
    issuer: Option<String>,
    /// GitHub's userinfo has no verified email: ask `/user/emails`.
    github: bool,
}

/// The providers and the return-URL allow-list, checked at start.
pub struct OAuth {
    providers: Vec<Arc<Provider>>,
    return_urls: Vec<Url>,
    callback_base: String,
}

impl OAuth {
    pub fn from_config(config: &Config) -> Result<OAuth, String> {
        let mut providers: Vec<Arc<Provider>> = Vec::new();
        for p in &config.oauth {
            let provider = provider(p)?;
            if providers.iter().any(|q| q.name == provider.name) {
                return Err(format!("[[oauth]] '{}' is listed twice", provider.name));
            }
            providers.push(Arc::new(provider));
        }
        let return_urls = config
            .accounts
            .oauth_return_urls
            .iter()
            .map(|u| Url::parse(u).map_err(|e| format!("PLAZA_OAUTH_RETURN_URLS: '{u}': {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if !providers.is_empty() && return_urls.is_empty() {
            return Err("[[oauth]] providers need PLAZA_OAUTH_RETURN_URLS (where a sign-in may return to)".into());
        }
        let callback_base = config
            .accounts
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{}", config.host, config.port))
            .trim_end_matches('/')
            .to_string();
        Ok(OAuth { providers, return_urls, callback_base })
    }

    fn find(&self, name: &str) -> Result<&Arc<Provider>, ApiError> {
        self.providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| PlazaError::NotFound(format!("no sign-in provider '{name}'")).into())
    }

    /// Scheme, host and port equal, and the path within the allowed one.
    fn allowed(&self, candidate: &str) -> Option<Url> {
        let u = Url::parse(candidate).ok()?;
        if !u.username().is_empty() || u.password().is_some() {
            return None;
        }
        let ok = self.return_urls.iter().any(|a| {
            let within = a.path().ends_with('/') && u.path().starts_with(a.path())
                || u.path() == a.path()
                || u.path().starts_with(&format!("{}/", a.path()));
            a.scheme() == u.scheme() && a.host_str() == u.host_str() && a.port_or_known_default() == u.port_or_known_default() && within
        });
        ok.then_some(u)
    }
}

fn provider(p: &OAuthProviderConfig) -> Result<Provider, String> {
    let bad = |why: &str| Err(format!("[[oauth]] '{}': {why}", p.name));
    if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return bad("name must be letters, digits, '-' or '_'");
    }
    if p.client_id.is_empty() {
        return bad("client_id is required");
    }
    let (preset, scopes, github): (Option<Endpoints>, Vec<&str>, bool) = match p.preset.as_deref() {
        Some("google") => (
            Some(Endpoints {
                auth: "https://accounts.google.com/o/oauth2/v2/auth".into(),
                token: "https://oauth2.googleapis.com/token".into(),
                userinfo: "https://openidconnect.googleapis.com/v1/userinfo".into(),
            }),
            vec!["openid", "email", "profile"],
            false,
        ),
        Some("github") => (
            Some(Endpoints {
                auth: "https://github.com/login/oauth/authorize".into(),
                token: "https://github.com/login/oauth/access_token".into(),
                userinfo: "https://api.github.com/user".into(),
            }),
            vec!["read:user", "user:email"],
            true,
        ),
        Some(other) => return bad(&format!("unknown preset '{other}' (google, github)")),
        None => (None, vec!["openid", "email", "profile"], false),
    };
    let explicit = match (&p.auth_url, &p.token_url, &p.userinfo_url) {
        (Some(a), Some(t), Some(u)) => Some(Endpoints { auth: a.clone(), token: t.clone(), userinfo: u.clone() }),
        (None, None, None) => None,
        _ => return bad("give auth_url, token_url and userinfo_url together (or issuer, or a preset)"),
    };
    let endpoints = explicit.or(preset);
    if endpoints.is_none() && p.issuer.is_none() {
        return bad("needs a preset, an issuer, or auth_url + token_url + userinfo_url");
    }
    if let Some(e) = &endpoints {
        for url in [&e.auth, &e.token, &e.userinfo] {
            Url::parse(url).map_err(|err| format!("[[oauth]] '{}': '{url}': {err}", p.name))?;
        }
    }
    Ok(Provider {
        name: p.name.clone(),
        display_name: p.display_name.clone().unwrap_or_else(|| p.name.clone()),
        client_id: p.client_id.clone(),
        client_secret: p.client_secret.clone().filter(|s| !s.is_empty()),
        scopes: p.scopes.clone().unwrap_or_else(|| scopes.into_iter().map(String::from).collect()),
        endpoints: endpoints.map_or_else(tokio::sync::OnceCell::new, |e| tokio::sync::OnceCell::new_with(Some(e))),
        issuer: p.issuer.clone(),
        github,
    })
}

/// A provider call failed; the detail goes to the log, the client hears which step failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProviderError(String);

/// oauth2's HTTP client, on awc (the server's own client): one request, body bounded.
async fn send(req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, ProviderError> {
    let fail = |e: &dyn std::fmt::Display| ProviderError(e.to_string());
    let client = awc::Client::builder().timeout(PROVIDER_TIMEOUT).finish();
    let method = awc::http::Method::from_bytes(req.method().as_str().as_bytes()).map_err(|e| fail(&e))?;
    let mut out = client.request(method, req.uri().to_string());
    for (k, v) in req.headers() {
        out = out.insert_header((k.as_str(), v.as_bytes()));
    }
    let mut resp = out.send_body(req.into_body()).await.map_err(|e| fail(&e))?;
    let body = resp.body().limit(MAX_PROVIDER_BODY).await.map_err(|e| fail(&e))?;
    let mut answer = oauth2::http::Response::builder().status(resp.status().as_u16());
    for (k, v) in resp.headers() {
        answer = answer.header(k.as_str(), v.as_bytes());
    }
    answer.body(body.to_vec()).map_err(|e| fail(&e))
}

/// GET a JSON document (userinfo with a bearer token, or discovery).
async fn get_json(url: &str, bearer: Option<&str>) -> Result<Value, ProviderError> {
    let mut req = oauth2::http::Request::builder()
        .method("GET")
        .uri(url)
        .header("Accept", "application/json")
        .header("User-Agent", concat!("plaza/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = bearer {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let req = req.body(Vec::new()).map_err(|e| ProviderError(e.to_string()))?;
    let resp = send(req).await?;
    if !resp.status().is_success() {
        return Err(ProviderError(format!("{url} answered {}", resp.status())));
    }
    serde_json::from_slice(resp.body()).map_err(|e| ProviderError(format!("{url}: {e}")))
}

impl Provider {
    async fn endpoints(&self) -> Result<&Endpoints, ApiError> {
        self.endpoints
            .get_or_try_init(|| async {
                let issuer = self.issuer.as_deref().unwrap_or_default().trim_end_matches('/');
                let doc = get_json(&format!("{issuer}/.well-known/openid-configuration"), None).await?;
                let field = |k: &str| doc[k].as_str().map(String::from).ok_or_else(|| ProviderError(format!("discovery has no {k}")));
                Ok::<_, ProviderError>(Endpoints {
                    auth: field("authorization_endpoint")?,
                    token: field("token_endpoint")?,
                    userinfo: field("userinfo_endpoint")?,
                })
            })
            .await
            .map_err(|e| {
                tracing::warn!(provider = %self.name, error = %e, "OpenID discovery failed");
                PlazaError::Unavailable(format!("the sign-in provider '{}' could not be reached", self.name)).into()
            })
    }

    fn client(&self, e: &Endpoints, callback: &str) -> Result<ConfiguredClient, ApiError> {
        let bad = |what: &str| -> ApiError { PlazaError::Internal(format!("provider {}: bad {what}", self.name)).into() };
        let mut c = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(AuthUrl::new(e.auth.clone()).map_err(|_| bad("auth_url"))?)
            .set_token_uri(TokenUrl::new(e.token.clone()).map_err(|_| bad("token_url"))?)
            .set_redirect_uri(RedirectUrl::new(callback.to_string()).map_err(|_| bad("callback URL"))?);
        if let Some(s) = &self.client_secret {
            c = c.set_client_secret(ClientSecret::new(s.clone()));
        }
        Ok(c)
    }
}

type ConfiguredClient = oauth2::basic::BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/auth/providers").route(web::get().to(providers)))
        .service(resource("/api/auth/login/{provider}").route(web::get().to(login)))
        .service(resource("/api/auth/callback/{provider}").route(web::get().to(callback)));
}

async fn providers(state: web::Data<AppState>) -> HttpResponse {
    let list: Vec<Value> = state
        .accounts
        .oauth
        .providers
        .iter()
        .map(|p| json!({"name": p.name, "display_name": p.display_name, "login_url": format!("/api/auth/login/{}", p.name)}))
        .collect();
    HttpResponse::Ok().json(json!({"providers": list}))
}

fn state_cookie(state: &AppState, value: String, max_age: i64) -> Cookie<'static> {
    Cookie::build(STATE_COOKIE, value)
        .path("/api/auth/callback")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.cookie_secure)
        .max_age(CookieDuration::seconds(max_age))
        .finish()
}

/// 302 to the provider. `?return_to=` must be on the allow-list (default: its first entry). A
/// guest who starts a sign-in becomes that account, keeping its user id.
async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    auth: Auth,
    name: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> ApiResult {
    attempt(&state, &req)?;
    let oauth = &state.accounts.oauth;
    let provider = oauth.find(&name)?.clone();
    let return_to = match query.get("return_to") {
        Some(r) => oauth
            .allowed(r)
            .ok_or_else(|| PlazaError::Validation("return_to is not one of the allowed return URLs".into()))?,
        None => oauth.return_urls.first().cloned().ok_or_else(|| PlazaError::Validation("no return URL configured".into()))?,
    };
    let guest_id = auth.ctx.user_id.clone().filter(|_| auth.ctx.guest && !auth.ctx.api_key);
    let endpoints = provider.endpoints().await?.clone();
    let callback = format!("{}/api/auth/callback/{}", oauth.callback_base, provider.name);
    let client = provider.client(&endpoints, &callback)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let st = plaza_actors::accounts::crypto::token()?;
    let st2 = st.clone();
    let (url, _) = client
        .authorize_url(move || CsrfToken::new(st2))
        .add_scopes(provider.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    state
        .plaza
        .accounts
        .send(SaveSignIn {
            state: st.clone(),
            provider: provider.name.clone(),
            pkce_verifier: verifier.secret().clone(),
            return_to: return_to.to_string(),
            guest_id,
        })
        .await??;
    Ok(HttpResponse::Found()
        .insert_header((header::LOCATION, url.to_string()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(state_cookie(&state, st, STATE_COOKIE_SECS))
        .finish())
}

/// The provider sends the browser back here with `code` and `state`.
async fn callback(
    state: web::Data<AppState>,
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
) -> ApiResult {
    attempt(&state, &req)?;
    let provider = state.accounts.oauth.find(&name)?.clone();
    if let Some(err) = query.get("error") {
        let err: String = err.chars().filter(|c| c.is_ascii_graphic()).take(100).collect();
        return Err(ApiError::Unauthorized(format!("the provider did not sign you in: {err}")));
    }
    let code = query.get("code").ok_or_else(|| PlazaError::Validation("the callback has no code".into()))?;
    let st = query.get("state").ok_or_else(|| PlazaError::Validation("the callback has no state".into()))?;
    let mismatch = || -> ApiError { PlazaError::Forbidden("the sign-in state does not match this browser's; start the sign-in again".into()).into() };
    let cookie = req.cookie(STATE_COOKIE).ok_or_else(mismatch)?;
    if !constant_time_eq::constant_time_eq(cookie.value().as_bytes(), st.as_bytes()) {
        return Err(mismatch());
    }
    let pending = state
        .plaza
        .accounts
        .send(TakeSignIn { state: st.clone(), provider: provider.name.clone() })
        .await??
        .ok_or_else(mismatch)?;

    let endpoints = provider.endpoints().await?.clone();
    let callback_url = format!("{}/api/auth/callback/{}", state.accounts.oauth.callback_base, provider.name);
    let client = provider.client(&endpoints, &callback_url)?;
    let http = |r| send(r);
    let token = client
        .exchange_code(AuthorizationCode::new(code.clone()))
        .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| {
            tracing::warn!(provider = %provider.name, error = %e, "token exchange failed");
            ApiError::Unauthorized("the provider did not accept the sign-in code".into())
        })?;
    let access = token.access_token().secret().clone();
    let unreachable = |e: ProviderError| -> ApiError {
        tracing::warn!(provider = %provider.name, error = %e, "userinfo failed");
        PlazaError::Unavailable(format!("could not read the account from '{}'", provider.name)).into()
    };
    let info = get_json(&endpoints.userinfo, Some(&access)).await.map_err(unreachable)?;
    let subject = match (&info["sub"], &info["id"]) {
        (Value::String(s), _) | (_, Value::String(s)) if !s.is_empty() => s.clone(),
        (_, Value::Number(n)) => n.to_string(),
        _ => return Err(PlazaError::Unavailable(format!("'{}' did not say who signed in", provider.name)).into()),
    };
    let (mut email, mut email_verified) = (
        info["email"].as_str().map(String::from),
        matches!(&info["email_verified"], Value::Bool(true)) || info["email_verified"].as_str() == Some("true"),
    );
    if provider.github {
        let emails_url = endpoints.userinfo.trim_end_matches('/').to_string() + "/emails";
        if let Ok(Value::Array(list)) = get_json(&emails_url, Some(&access)).await {
            if let Some(primary) = list.iter().find(|e| e["primary"] == true && e["verified"] == true) {
                email = primary["email"].as_str().map(String::from);
                email_verified = true;
            }
        }
    }
    let r = state
        .plaza
        .accounts
        .send(ProviderSignIn { provider: provider.name.clone(), subject, email, email_verified, guest_id: pending.guest_id.clone() })
        .await?;
    count(&state, &r);
    let signed = r?;
    if let Some(guest) = &pending.guest_id {
        use plaza_actors::sessions::manage::{EndUserSessions, Ending};
        if guest == &signed.user_id {
            state.plaza.sessions.send(EndUserSessions { user_id: guest.clone(), keep: None, ending: Ending::Guests }).await??;
        }
    }
    let mut to = Url::parse(&pending.return_to).map_err(|_| PlazaError::Internal("stored return URL does not parse".into()))?;
    let mut gone = state_cookie(&state, String::new(), 0);
    gone.make_removal();
    let mut resp = HttpResponse::Found();
    resp.cookie(gone).insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(mfa) = signed.mfa_token {
        // In the fragment: never sent to a server, not in logs or Referer.
        to.set_fragment(Some(&format!("mfa_token={mfa}")));
        state.accounts.logins.with_label_values(&["mfa_required"]).inc();
    } else {
        let s = state.plaza.sessions.send(Issue { user_id: signed.user_id, verified: signed.verified, meta: meta(&req) }).await??;
        resp.cookie(crate::http::auth::session_cookie(&state, s.token, s.max_age_secs));
    }
    Ok(resp.insert_header((header::LOCATION, to.to_string())).finish())
}

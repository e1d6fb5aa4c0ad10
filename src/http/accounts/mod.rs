//! Accounts over HTTP (Pylon's paths): password register/login/change/reset, email
//! verification, the caller's sessions and API keys, guest upgrade. Handlers validate, ask the
//! `Accounts` actor to prove who the caller is, then ask the `SessionStore` for the session;
//! every issued session is also the `plaza_session` cookie, as for the other auth routes.
//!
//! Credential attempts are limited per client IP here (`PLAZA_LOGIN_RATE_LIMIT`) and per
//! account in the actor (`PLAZA_LOGIN_MAX_FAILURES`); both answer 429 with `Retry-After`.

pub mod admin;
pub mod keys;
pub mod oauth;
pub mod totp;

use std::net::IpAddr;
use std::sync::Arc;

use actix_governor::governor::clock::{Clock, DefaultClock};
use actix_governor::governor::{DefaultKeyedRateLimiter, Quota};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use plaza_actors::accounts::{
    ChangePassword, CompleteReset, Login, Register, RequestReset, SendVerification, SignedIn, VerifyEmail,
};
use plaza_actors::sessions::manage::{EndUserSessions, Ending, Issue, SetVerified};
use plaza_actors::sessions::{SessionMeta, MAX_USER_AGENT_LEN};
use plaza_actors::PlazaError;
use prometheus::{IntCounterVec, Opts};
use serde_json::{json, Value};

use super::resource;
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, JsonBody};
use crate::mailer::Purpose;
use crate::AppState;

/// Everything the account routes keep besides the actors: the per-IP attempt limiter and the
/// login counters.
pub struct AccountsState {
    attempts: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    /// `plaza_auth_logins_total{result="success|failure|locked_out|mfa_required"}`.
    pub logins: IntCounterVec,
    /// Sign-in providers and where their sign-ins may return to.
    pub oauth: oauth::OAuth,
}

/// How often idle IPs are dropped from the attempt limiter.
const PRUNE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

impl AccountsState {
    pub fn new(config: &Config, registry: &prometheus::Registry) -> Result<AccountsState, String> {
        let per_minute = config.accounts.login_rate_limit;
        let attempts = std::num::NonZeroU32::new(u32::try_from(per_minute).unwrap_or(u32::MAX))
            .map(|n| Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_minute(n))));
        if let Some(limiter) = &attempts {
            let weak = Arc::downgrade(limiter);
            actix::spawn(async move {
                let mut tick = actix::clock::interval(PRUNE_INTERVAL);
                loop {
                    tick.tick().await;
                    let Some(l) = weak.upgrade() else { break };
                    l.retain_recent();
                    l.shrink_to_fit();
                }
            });
        }
        let logins = IntCounterVec::new(Opts::new("auth_logins_total", "Password and second-factor sign-ins by result"), &["result"])
            .map_err(|e| e.to_string())?;
        registry.register(Box::new(logins.clone())).map_err(|e| e.to_string())?;
        let oauth = oauth::OAuth::from_config(config)?;
        Ok(AccountsState { attempts, logins, oauth })
    }

    pub fn json(&self) -> Value {
        let n = |r: &str| self.logins.with_label_values(&[r]).get();
        json!({"logins": n("success"), "failures": n("failure"), "lockouts": n("locked_out"), "mfa_required": n("mfa_required")})
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/auth/password/register").route(web::post().to(register)))
        .service(resource("/api/auth/password/login").route(web::post().to(login)))
        .service(resource("/api/auth/password/change").route(web::post().to(change)))
        .service(resource("/api/auth/password/reset/request").route(web::post().to(reset_request)))
        .service(resource("/api/auth/password/reset/complete").route(web::post().to(reset_complete)))
        .service(resource("/api/auth/email/send-verification").route(web::post().to(send_verification)))
        .service(resource("/api/auth/email/verify").route(web::post().to(verify_email)))
        .service(resource("/api/auth/upgrade").route(web::post().to(upgrade)));
    keys::routes(cfg);
    totp::routes(cfg);
    oauth::routes(cfg);
    admin::routes(cfg);
}

/// One credential attempt from this client IP; 429 past `PLAZA_LOGIN_RATE_LIMIT` a minute.
pub(crate) fn attempt(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let Some(limiter) = &state.accounts.attempts else { return Ok(()) };
    let ip = crate::middleware::caller::caller_ip(req).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    limiter.check_key(&ip).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::RateLimited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
    })
}

/// Where a session comes from: the client's user agent (truncated) and IP.
pub(crate) fn meta(req: &HttpRequest) -> SessionMeta {
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| {
        let mut end = ua.len().min(MAX_USER_AGENT_LEN);
        while !ua.is_char_boundary(end) {
            end -= 1;
        }
        ua[..end].to_string()
    });
    SessionMeta { user_agent, ip: crate::middleware::caller::caller_ip(req).map(|ip| ip.to_string()) }
}

pub(crate) fn text_field(body: &Value, name: &str) -> Result<String, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| PlazaError::Validation(format!("\"{name}\" (a string) is required")).into())
}

/// A code given as a string or a number (leading zeros restored for 6-digit codes).
pub(crate) fn code_field(body: &Value) -> Result<String, ApiError> {
    match body.get("code") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(format!("{:06}", n.as_u64().unwrap_or(u64::MAX))),
        _ => Err(PlazaError::Validation("\"code\" is required".into()).into()),
    }
}

/// A signed-in caller with a sign-in session (not the admin, not an API key): account routes.
pub(crate) fn session_user(auth: &Auth) -> Result<String, ApiError> {
    if auth.ctx.api_key {
        return Err(PlazaError::Forbidden("API keys cannot manage the account; sign in".into()).into());
    }
    match &auth.ctx.user_id {
        Some(id) if auth.ctx.session.is_some() => Ok(id.clone()),
        _ => Err(ApiError::Unauthorized("this needs a session: send Authorization: Bearer TOKEN or the plaza_session cookie".into())),
    }
}

/// The answer to a proven sign-in: 200 `{"mfa_required":true,"mfa_token"}` when a second factor
/// is owed, else 201 with a new session (and its cookie).
pub(crate) async fn signed_in(state: &AppState, signed: SignedIn, meta: SessionMeta) -> ApiResult {
    if let Some(token) = signed.mfa_token {
        state.accounts.logins.with_label_values(&["mfa_required"]).inc();
        return Ok(HttpResponse::Ok().json(json!({"mfa_required": true, "mfa_token": token})));
    }
    let s = state.plaza.sessions.send(Issue { user_id: signed.user_id, verified: signed.verified, meta }).await??;
    Ok(crate::http::auth::issued(state, s))
}

/// Counts a sign-in outcome for `/metrics`.
pub(crate) fn count<T>(state: &AppState, r: &Result<T, PlazaError>) {
    let result = match r {
        Ok(_) => "success",
        Err(PlazaError::RateLimited { .. }) => "locked_out",
        Err(PlazaError::Unauthorized(_)) => "failure",
        Err(_) => return,
    };
    state.accounts.logins.with_label_values(&[result]).inc();
}

async fn register(state: web::Data<AppState>, req: HttpRequest, JsonBody(body): JsonBody) -> ApiResult {
    attempt(&state, &req)?;
    let (email, password) = (text_field(&body, "email")?, text_field(&body, "password")?);
    let signed = state.plaza.accounts.send(Register { email, password, guest_id: None }).await??;
    signed_in(&state, signed, meta(&req)).await
}

async fn login(state: web::Data<AppState>, req: HttpRequest, JsonBody(body): JsonBody) -> ApiResult {
    attempt(&state, &req)?;
    let (email, password) = (text_field(&body, "email")?, text_field(&body, "password")?);
    let r = state.plaza.accounts.send(Login { email, password }).await?;
    count(&state, &r);
    signed_in(&state, r?, meta(&req)).await
}

/// Needs the current password; every other session of the account ends (API keys stay).
async fn change(state: web::Data<AppState>, req: HttpRequest, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    attempt(&state, &req)?;
    let user_id = session_user(&auth)?;
    let old = text_field(&body, "old_password").or_else(|_| text_field(&body, "current_password"))?;
    let new = text_field(&body, "new_password")?;
    state.plaza.accounts.send(ChangePassword { user_id: user_id.clone(), old, new }).await??;
    let revoked = state
        .plaza
        .sessions
        .send(EndUserSessions { user_id, keep: auth.ctx.session.clone(), ending: Ending::Sessions })
        .await??;
    Ok(HttpResponse::Ok().json(json!({"ok": true, "revoked": revoked})))
}

/// 200 `{"sent":true}` whether or not the address has an account; the code (if any) is
/// delivered in the background so the answer takes the same time either way.
async fn reset_request(state: web::Data<AppState>, req: HttpRequest, JsonBody(body): JsonBody) -> ApiResult {
    attempt(&state, &req)?;
    let email = text_field(&body, "email")?;
    if let Some(code) = state.plaza.accounts.send(RequestReset { email: email.clone() }).await?? {
        let mailer = state.mailer.clone();
        actix_web::rt::spawn(async move {
            if let Err(e) = mailer.send_for(Purpose::PasswordReset, &email, &code).await {
                tracing::warn!(error = %e, "could not deliver a password reset code");
            }
        });
    }
    Ok(HttpResponse::Ok().json(json!({"sent": true})))
}

/// Sets the new password, ends every session and API key of the account, signs in.
async fn reset_complete(state: web::Data<AppState>, req: HttpRequest, JsonBody(body): JsonBody) -> ApiResult {
    attempt(&state, &req)?;
    let (email, password) = (text_field(&body, "email")?, text_field(&body, "password")?);
    let code = code_field(&body)?;
    let signed = state.plaza.accounts.send(CompleteReset { email, code, password }).await??;
    let user_id = signed.user_id.clone();
    state.plaza.sessions.send(EndUserSessions { user_id, keep: None, ending: Ending::Everything }).await??;
    signed_in(&state, signed, meta(&req)).await
}

async fn send_verification(state: web::Data<AppState>, auth: Auth) -> ApiResult {
    let user_id = session_user(&auth)?;
    let (email, code) = state.plaza.accounts.send(SendVerification { user_id }).await??;
    state
        .mailer
        .send_for(Purpose::VerifyEmail, &email, &code)
        .await
        .map_err(|e| PlazaError::Unavailable(format!("could not deliver the code: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({"sent": true})))
}

async fn verify_email(state: web::Data<AppState>, req: HttpRequest, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    attempt(&state, &req)?;
    let user_id = session_user(&auth)?;
    let code = code_field(&body)?;
    state.plaza.accounts.send(VerifyEmail { user_id: user_id.clone(), code }).await??;
    state.plaza.sessions.do_send(SetVerified { user_id });
    Ok(HttpResponse::Ok().json(json!({"verified": true})))
}

/// The calling guest becomes a password account with the same user id (rows it owns stay its
/// own); its guest sessions end and a new account session is issued.
async fn upgrade(state: web::Data<AppState>, req: HttpRequest, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    attempt(&state, &req)?;
    let guest_id = session_user(&auth)?;
    if !auth.ctx.guest {
        return Err(PlazaError::Conflict("only a guest session can be upgraded".into()).into());
    }
    let (email, password) = (text_field(&body, "email")?, text_field(&body, "password")?);
    let signed = state.plaza.accounts.send(Register { email, password, guest_id: Some(guest_id.clone()) }).await??;
    state.plaza.sessions.send(EndUserSessions { user_id: guest_id, keep: None, ending: Ending::Guests }).await??;
    signed_in(&state, signed, meta(&req)).await
}

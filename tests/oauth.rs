//! OAuth2 sign-in against a mock provider started by the test on 127.0.0.1:0 (token and
//! userinfo endpoints; the test plays the browser at the authorize step): PKCE verified by the
//! provider, state single use and bound to the browser, return URLs on the allow-list only,
//! linking to an existing account only for a verified email, guest upgrade keeping the id.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{web, App, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use plaza::config::accounts::OAuthProviderConfig;
use plaza::config::Config;
use plaza_actors::accounts::crypto::sha256;
use serde_json::{json, Value};

#[derive(Default)]
struct Mock {
    /// code → (PKCE challenge, the userinfo to answer)
    grants: HashMap<String, (String, Value)>,
    /// access token → userinfo
    tokens: HashMap<String, Value>,
    pkce_checked: usize,
}

type Shared = Arc<Mutex<Mock>>;

async fn token(mock: web::Data<Shared>, req: HttpRequest, form: web::Form<HashMap<String, String>>) -> HttpResponse {
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("cid:csecret"));
    let auth_ok = req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(basic.as_str());
    let mut m = mock.lock().unwrap();
    let refuse = |e: &str| HttpResponse::BadRequest().json(json!({"error": e}));
    if !auth_ok {
        return refuse("invalid_client");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code")
        || form.get("redirect_uri").map(String::as_str) != Some("http://plaza.test/api/auth/callback/mock")
    {
        return refuse("invalid_request");
    }
    let Some((challenge, info)) = form.get("code").and_then(|c| m.grants.remove(c)) else { return refuse("invalid_grant") };
    let verifier = form.get("code_verifier").cloned().unwrap_or_default();
    if URL_SAFE_NO_PAD.encode(sha256(&[verifier.as_bytes()])) != challenge {
        return refuse("invalid_grant");
    }
    m.pkce_checked += 1;
    let access = format!("at-{}", m.tokens.len());
    m.tokens.insert(access.clone(), info);
    HttpResponse::Ok().json(json!({"access_token": access, "token_type": "bearer", "expires_in": 3600}))
}

async fn userinfo(mock: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    let bearer = req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match bearer.and_then(|t| mock.lock().unwrap().tokens.get(t).cloned()) {
        Some(info) => HttpResponse::Ok().json(info),
        None => HttpResponse::Unauthorized().finish(),
    }
}

fn query(url: &str) -> HashMap<String, String> {
    let u = oauth2::url::Url::parse(url).unwrap();
    u.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn set_cookie(resp: &actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, name: &str) -> Option<String> {
    resp.response().cookies().find(|c| c.name() == name).map(|c| c.value().to_string())
}

/// The mock provider's state (shared with its handlers) and its server.
fn mock_provider() -> (Shared, actix_test::TestServer) {
    let mock: Shared = Arc::default();
    let served = mock.clone();
    let provider = actix_test::start(move || {
        App::new()
            .app_data(web::Data::new(served.clone()))
            .route("/token", web::post().to(token))
            .route("/userinfo", web::get().to(userinfo))
    });
    (mock, provider)
}

#[actix_web::test]
async fn oauth_sign_in_with_pkce_state_links_and_upgrades() {
    let (mock, provider) = mock_provider();
    let base = provider.url("/");
    let mut cfg = Config { ..config() };
    cfg.oauth = vec![OAuthProviderConfig {
        name: "mock".into(),
        client_id: "cid".into(),
        client_secret: Some("csecret".into()),
        auth_url: Some(format!("{base}authorize")),
        token_url: Some(format!("{base}token")),
        userinfo_url: Some(format!("{base}userinfo")),
        display_name: Some("Mock ID".into()),
        ..Default::default()
    }];
    cfg.accounts.oauth_return_urls = vec!["http://app.example/after".into()];
    cfg.accounts.public_url = Some("http://plaza.test".into());
    cfg.accounts.accounts_key = Some("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".into());
    let app = app_with(cfg).await;

    let (status, list) = call(&app, get("/api/auth/providers")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["providers"], json!([{"name":"mock","display_name":"Mock ID","login_url":"/api/auth/login/mock"}]));
    assert_eq!(call(&app, get("/api/auth/login/nope")).await.0, StatusCode::NOT_FOUND);
    for evil in ["http://evil.example/after", "http://app.example.evil.com/after", "http://app.example/afterwards", "https://app.example/after", "http://u:p@app.example/after"] {
        let (status, body) = call(&app, get(&format!("/api/auth/login/mock?return_to={}", urlencode(evil)))).await;
        assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"), "{evil} must be refused");
    }

    // Starts a sign-in (optionally as a guest): (state, state cookie, PKCE challenge).
    let start = |guest: Option<String>| {
        let mut req = get(&format!("/api/auth/login/mock?return_to={}", urlencode("http://app.example/after/x")));
        if let Some(g) = guest {
            req = req.insert_header(("Authorization", format!("Bearer {g}")));
        }
        req
    };
    let begin = |resp: actix_web::dev::ServiceResponse<_>| {
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = resp.headers().get("location").unwrap().to_str().unwrap().to_string();
        assert!(location.starts_with(&format!("{base}authorize?")), "{location}");
        let q = query(&location);
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["client_id"], "cid");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["redirect_uri"], "http://plaza.test/api/auth/callback/mock");
        let cookie = set_cookie(&resp, "plaza_oauth_state").expect("state cookie");
        assert_eq!(cookie, q["state"], "the state is bound to this browser");
        (q["state"].clone(), cookie, q["code_challenge"].clone())
    };
    let grant = |code: &str, challenge: &str, info: Value| {
        mock.lock().unwrap().grants.insert(code.to_string(), (challenge.to_string(), info));
    };
    let back = |code: &str, state: &str, cookie: Option<&str>| {
        let mut req = get(&format!("/api/auth/callback/mock?code={code}&state={state}"));
        if let Some(c) = cookie {
            req = req.cookie(actix_web::cookie::Cookie::new("plaza_oauth_state", c.to_string()));
        }
        req
    };

    // A new person with a verified email.
    let (state, cookie, challenge) = begin(test::call_service(&app, start(None).to_request()).await);
    grant("c1", &challenge, json!({"sub":"s1","email":"New@Example.com","email_verified":true}));
    let resp = test::call_service(&app, back("c1", &state, Some(&cookie)).to_request()).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers().get("location").unwrap(), "http://app.example/after/x");
    let session = set_cookie(&resp, "plaza_session").expect("session cookie");
    let (status, me) = call(&app, get("/api/auth/me").insert_header(("Authorization", format!("Bearer {session}")))).await;
    assert_eq!((status, me["guest"].clone()), (StatusCode::OK, json!(false)));
    let s1_user = me["user_id"].as_str().unwrap().to_string();
    assert_eq!(mock.lock().unwrap().pkce_checked, 1, "the provider saw the right PKCE verifier");
    let (status, body) = call(&app, back("c1", &state, Some(&cookie))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "a state is single use");

    // State mismatch: no cookie, another browser's cookie, a made-up state.
    let (state, cookie, challenge) = begin(test::call_service(&app, start(None).to_request()).await);
    let (_, other_cookie, _) = begin(test::call_service(&app, start(None).to_request()).await);
    grant("c2", &challenge, json!({"sub":"s2"}));
    assert_eq!(call(&app, back("c2", &state, None)).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, back("c2", &state, Some(&other_cookie))).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, back("c2", "made-up", Some("made-up"))).await.0, StatusCode::FORBIDDEN);
    // PKCE: a code issued for another challenge is refused by the provider.
    grant("c3", "not-the-challenge", json!({"sub":"s3"}));
    let (status, body) = call(&app, back("c3", &state, Some(&cookie))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{body}");
    assert_eq!(mock.lock().unwrap().pkce_checked, 1);

    // Linking: an unverified email never takes over an account; a verified one links to it.
    let (_, reg) = call(&app, post("/api/auth/password/register", json!({"email":"bob@example.com","password":"correct horse battery"}))).await;
    let bob = reg["user_id"].as_str().unwrap().to_string();
    let (state, cookie, challenge) = begin(test::call_service(&app, start(None).to_request()).await);
    grant("c4", &challenge, json!({"sub":"gh-bob","email":"bob@example.com","email_verified":false}));
    let (status, body) = call(&app, back("c4", &state, Some(&cookie))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "CONFLICT"), "{body}");
    let (state, cookie, challenge) = begin(test::call_service(&app, start(None).to_request()).await);
    grant("c5", &challenge, json!({"sub":"gh-bob","email":"bob@example.com","email_verified":"true"}));
    let resp = test::call_service(&app, back("c5", &state, Some(&cookie)).to_request()).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let t = set_cookie(&resp, "plaza_session").unwrap();
    let (_, me) = call(&app, get("/api/auth/me").insert_header(("Authorization", format!("Bearer {t}")))).await;
    assert_eq!(me["user_id"], bob.as_str(), "linked to the password account");
    // The same identity again (its email now gone): the linked account.
    let (state, cookie, challenge) = begin(test::call_service(&app, start(None).to_request()).await);
    grant("c6", &challenge, json!({"sub":"s1"}));
    let resp = test::call_service(&app, back("c6", &state, Some(&cookie)).to_request()).await;
    let t = set_cookie(&resp, "plaza_session").unwrap();
    let (_, me) = call(&app, get("/api/auth/me").insert_header(("Authorization", format!("Bearer {t}")))).await;
    assert_eq!(me["user_id"], s1_user.as_str());

    // With TOTP on, the provider alone does not sign in: the return URL gets #mfa_token.
    let bearer = |req: TestRequest| req.insert_header(("Authorization", format!("Bearer {t}")));
    let (_, enrolled) = call(&app, bearer(TestRequest::post().uri("/api/auth/totp/enroll"))).await;
    let secret = totp_rs::Secret::Encoded(enrolled["secret"].as_str().unwrap().to_string()).to_bytes().unwrap();
    let code = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, String::new()).generate_current().unwrap();
    let (status, on) = call(&app, bearer(TestRequest::post().uri("/api/auth/totp/verify").set_json(json!({"code": code})))).await;
    assert_eq!(status, StatusCode::OK, "{on}");
    let (state, cookie, challenge) = begin(test::call_service(&app, start(None).to_request()).await);
    grant("c8", &challenge, json!({"sub":"s1"}));
    let resp = test::call_service(&app, back("c8", &state, Some(&cookie)).to_request()).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(set_cookie(&resp, "plaza_session").is_none(), "no session before the second factor");
    let location = resp.headers().get("location").unwrap().to_str().unwrap().to_string();
    let mfa = location.strip_prefix("http://app.example/after/x#mfa_token=").expect("mfa token in the fragment").to_string();
    let backup = on["backup_codes"][0].as_str().unwrap();
    let (status, s) = call(&app, TestRequest::post().uri("/api/auth/totp/verify").insert_header(("Origin", ORIGIN)).set_json(json!({"mfa_token": mfa, "code": backup}))).await;
    assert_eq!((status, s["user_id"].clone()), (StatusCode::CREATED, json!(s1_user)));

    // A guest who signs in with a provider becomes that account under the same id.
    let (_, guest) = call(&app, TestRequest::post().uri("/api/auth/guest").insert_header(("Origin", ORIGIN))).await;
    let (g, guest_id) = (guest["token"].as_str().unwrap().to_string(), guest["user_id"].as_str().unwrap().to_string());
    let (state, cookie, challenge) = begin(test::call_service(&app, start(Some(g.clone())).to_request()).await);
    grant("c7", &challenge, json!({"sub":"s7","email":"gus@example.com","email_verified":true}));
    let resp = test::call_service(&app, back("c7", &state, Some(&cookie)).to_request()).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let t = set_cookie(&resp, "plaza_session").unwrap();
    let (_, me) = call(&app, get("/api/auth/me").insert_header(("Authorization", format!("Bearer {t}")))).await;
    assert_eq!(me, json!({"user_id": guest_id, "guest": false, "admin": false}));
    let (status, _) = call(&app, get("/api/auth/me").insert_header(("Authorization", format!("Bearer {g}")))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the guest session ended");
}

#[actix_web::test]
async fn linked_identities_and_pending_sign_ins_survive_a_restart() {
    let (mock, provider) = mock_provider();
    let base = provider.url("/");
    let dir = tempfile::tempdir().unwrap();
    let cfg = || {
        let mut c = Config { in_memory: false, db: dir.path().join("plaza.db"), ..config() };
        c.oauth = vec![OAuthProviderConfig {
            name: "mock".into(),
            client_id: "cid".into(),
            client_secret: Some("csecret".into()),
            auth_url: Some(format!("{base}authorize")),
            token_url: Some(format!("{base}token")),
            userinfo_url: Some(format!("{base}userinfo")),
            ..Default::default()
        }];
        c.accounts.oauth_return_urls = vec!["http://app.example/".into()];
        c.accounts.public_url = Some("http://plaza.test/".into());
        c
    };
    let sign_in = |state: &str, cookie: &str| {
        get(&format!("/api/auth/callback/mock?code=c-{state}&state={state}"))
            .cookie(actix_web::cookie::Cookie::new("plaza_oauth_state", cookie.to_string()))
    };
    let started = |resp: actix_web::dev::ServiceResponse<_>| {
        let q = query(resp.headers().get("location").unwrap().to_str().unwrap());
        (q["state"].clone(), q["code_challenge"].clone())
    };
    let (first_user, pending) = {
        let app = app_with(cfg()).await;
        let (state, challenge) = started(test::call_service(&app, get("/api/auth/login/mock").to_request()).await);
        mock.lock().unwrap().grants.insert(format!("c-{state}"), (challenge, json!({"sub":"p1","email":"pat@example.com","email_verified":true})));
        let resp = test::call_service(&app, sign_in(&state, &state).to_request()).await;
        assert_eq!(resp.headers().get("location").unwrap(), "http://app.example/");
        let t = set_cookie(&resp, "plaza_session").unwrap();
        let (_, me) = call(&app, get("/api/auth/me").insert_header(("Authorization", format!("Bearer {t}")))).await;
        // A second sign-in is left at the provider while the server restarts.
        let pending = started(test::call_service(&app, get("/api/auth/login/mock").to_request()).await);
        (me["user_id"].as_str().unwrap().to_string(), pending)
    };
    let app = app_with(cfg()).await;
    let (state, challenge) = pending;
    mock.lock().unwrap().grants.insert(format!("c-{state}"), (challenge, json!({"sub":"p1"})));
    let resp = test::call_service(&app, sign_in(&state, &state).to_request()).await;
    assert_eq!(resp.status(), StatusCode::FOUND, "the pending sign-in survived");
    let t = set_cookie(&resp, "plaza_session").unwrap();
    let (_, me) = call(&app, get("/api/auth/me").insert_header(("Authorization", format!("Bearer {t}")))).await;
    assert_eq!(me["user_id"], first_user.as_str(), "the identity stays linked");
}

fn urlencode(s: &str) -> String {
    oauth2::url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Real providers are HTTPS: the client the server uses must speak TLS (refused connection,
/// not "SSL is not supported").
#[actix_web::test]
async fn the_outgoing_client_speaks_https() {
    let client = awc::Client::builder().timeout(std::time::Duration::from_secs(5)).finish();
    let err = client.get("https://127.0.0.1:9/").send().await.expect_err("nothing listens on port 9");
    let text = err.to_string();
    assert!(!text.to_lowercase().contains("ssl is not supported"), "{text}");
}

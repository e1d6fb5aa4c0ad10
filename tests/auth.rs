//! Sessions end to end: minting, guests, magic codes, cookies + CSRF, logout, expiry, and bad
//! credentials (always 401 JSON, never 500).

mod common;

use std::sync::mpsc;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use common::*;
use futures_util::future::LocalBoxFuture;
use plaza::config::Config;
use plaza::mailer::CodeSender;
use serde_json::{json, Value};

/// Captures the codes the server would deliver.
struct Capture(mpsc::Sender<(String, String)>);

impl CodeSender for Capture {
    fn send(&self, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        let _ = self.0.send((email.to_string(), code.to_string()));
        Box::pin(async { Ok(()) })
    }
}

fn bearer(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

fn anon_post(path: &str, body: Value) -> TestRequest {
    TestRequest::post().uri(path).insert_header(("Origin", ORIGIN)).set_json(body)
}

#[actix_web::test]
async fn session_lifecycle_me_and_logout() {
    let app = app().await;
    let (status, s) = call(&app, post("/api/auth/session", json!({"user_id":"alice"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(s["user_id"], "alice");
    assert!(s["expires_at"].as_str().unwrap().ends_with('Z'));
    let token = s["token"].as_str().unwrap().to_string();
    assert!(token.len() >= 43, "at least 256 bits of secret");

    let (status, me) = call(&app, bearer(get("/api/auth/me"), &token)).await;
    assert_eq!((status, me), (StatusCode::OK, json!({"user_id":"alice","guest":false,"admin":false})));
    let (_, me) = call(&app, admin(get("/api/auth/me"))).await;
    assert_eq!(me["admin"], true);
    let (status, body) = call(&app, get("/api/auth/me")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));

    let (status, _) = call(&app, bearer(TestRequest::post().uri("/api/auth/logout"), &token)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = call(&app, bearer(get("/api/auth/me"), &token)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "logout revokes");
}

#[actix_web::test]
async fn only_admin_or_dev_mode_mints_sessions() {
    let app = app().await;
    let (status, body) = call(&app, anon_post("/api/auth/session", json!({"user_id":"mallory"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    let (status, body) = call(&app, post("/api/auth/session", json!({"user_id":""}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"));
    let dev = app_with(Config { dev_mode: true, ..config() }).await;
    assert_eq!(call(&dev, anon_post("/api/auth/session", json!({"user_id":"dev"}))).await.0, StatusCode::CREATED);
}

#[actix_web::test]
async fn guests_are_flagged() {
    let app = app().await;
    let (status, g) = call(&app, anon_post("/api/auth/guest", json!({}))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(g["guest"], true);
    let (_, me) = call(&app, bearer(get("/api/auth/me"), g["token"].as_str().unwrap())).await;
    assert_eq!((me["guest"].clone(), me["user_id"].clone()), (json!(true), g["user_id"].clone()));
    let (_, other) = call(&app, anon_post("/api/auth/guest", json!({}))).await;
    assert_ne!(other["user_id"], g["user_id"], "every guest is someone new");
}

#[actix_web::test]
async fn magic_codes_sign_in_and_lock_after_five_wrong_attempts() {
    let (tx, rx) = mpsc::channel();
    let state = plaza::build_state_full(config(), todo_manifest(), Arc::new(Capture(tx))).unwrap();
    let app = test::init_service(App::new().configure(plaza::configure(state))).await;

    let (status, _) = call(&app, anon_post("/api/auth/magic/send", json!({"email":" Ann@Example.com"}))).await;
    assert_eq!(status, StatusCode::OK);
    let (email, code) = rx.try_recv().expect("the code was handed to the sender");
    assert_eq!(email, " Ann@Example.com");
    assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()));

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body) = call(&app, anon_post("/api/auth/magic/verify", json!({"email":"ann@example.com","code":wrong}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    let (status, s) = call(&app, anon_post("/api/auth/magic/verify", json!({"email":"ann@example.com","code":code}))).await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(s["user_id"], "ann@example.com");
    let (status, _) = call(&app, anon_post("/api/auth/magic/verify", json!({"email":"ann@example.com","code":code}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a code works once");

    call(&app, anon_post("/api/auth/magic/send", json!({"email":"bob@example.com"}))).await;
    let (_, code) = rx.try_recv().unwrap();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        call(&app, anon_post("/api/auth/magic/verify", json!({"email":"bob@example.com","code":wrong}))).await;
    }
    let (status, _) = call(&app, anon_post("/api/auth/magic/verify", json!({"email":"bob@example.com","code":code}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "five wrong attempts invalidate the code");

    for _ in 0..4 {
        assert_eq!(call(&app, anon_post("/api/auth/magic/send", json!({"email":"bob@example.com"}))).await.0, StatusCode::OK);
    }
    let resp = test::call_service(&app, anon_post("/api/auth/magic/send", json!({"email":"bob@example.com"})).to_request()).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "sends are limited per email");
    assert!(resp.headers().get("retry-after").is_some());
    let (status, body) = call(&app, anon_post("/api/auth/magic/send", json!({"email":"not-an-email"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"));
}

#[actix_web::test]
async fn cookie_sessions_and_csrf() {
    let app = app().await;
    let resp = test::call_service(&app, post("/api/auth/session", json!({"user_id":"carol"})).to_request()).await;
    let set_cookie = resp.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(set_cookie.starts_with("plaza_session="));
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax") && set_cookie.contains("Path=/"));
    let token = set_cookie.trim_start_matches("plaza_session=").split(';').next().unwrap().to_string();
    let cookie = actix_web::cookie::Cookie::new("plaza_session", token);

    let (status, me) = call(&app, get("/api/auth/me").cookie(cookie.clone())).await;
    assert_eq!((status, me["user_id"].clone()), (StatusCode::OK, json!("carol")));
    let write = || TestRequest::post().uri("/api/entities/Todo").cookie(cookie.clone()).set_json(json!({"title":"c","done":false}));
    let (status, body) = call(&app, write()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "CSRF"), "a cookie alone cannot change state");
    assert_eq!(call(&app, write().insert_header(("Origin", ORIGIN))).await.0, StatusCode::CREATED);

    let secure = app_with(Config { cookie_secure: true, ..config() }).await;
    let resp = test::call_service(&secure, post("/api/auth/guest", json!({})).to_request()).await;
    assert!(resp.headers().get("set-cookie").unwrap().to_str().unwrap().contains("Secure"));
}

#[actix_web::test]
async fn bad_credentials_are_401_json() {
    let app = app().await;
    let (_, s) = call(&app, post("/api/auth/session", json!({"user_id":"dave"}))).await;
    let token = s["token"].as_str().unwrap();
    // Same selector, different secret: the verifier is checked, not just looked up.
    let mut forged: Vec<char> = token.chars().collect();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    for bad in ["x", "not a token at all", &"A".repeat(65), &"A".repeat(5000), &forged, "   "] {
        let (status, body) = call(&app, bearer(get("/api/entities/Todo"), bad)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "{bad:.20}");
    }
    let bad_cookie = actix_web::cookie::Cookie::new("plaza_session", "garbage");
    assert_eq!(call(&app, get("/api/auth/me").cookie(bad_cookie)).await.0, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn sessions_expire_after_their_ttl() {
    let app = app_with(Config { session_ttl_secs: 1, ..config() }).await;
    let (_, s) = call(&app, post("/api/auth/session", json!({"user_id":"erin"}))).await;
    let token = s["token"].as_str().unwrap();
    assert_eq!(call(&app, bearer(get("/api/auth/me"), token)).await.0, StatusCode::OK);
    // Expiry is the passage of time itself; there is no event to await.
    actix_web::rt::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = call(&app, bearer(get("/api/auth/me"), token)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
}

//! Accounts end to end: password register/login/change/reset, lockouts in constant shape,
//! email verification and `auth.verified`, the session list, API keys, guest upgrade, and
//! everything surviving a restart.

mod common;

use std::sync::mpsc;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use common::*;
use futures_util::future::LocalBoxFuture;
use plaza::config::Config;
use plaza::mailer::{CodeSender, Purpose};
use plaza_actors::AppManifest;
use serde_json::{json, Value};

/// Captures every code the server would email: (purpose, email, code).
struct Capture(mpsc::Sender<(String, String, String)>);

impl CodeSender for Capture {
    fn send(&self, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        self.send_for(Purpose::SignIn, email, code)
    }
    fn send_for(&self, purpose: Purpose, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        let _ = self.0.send((purpose.as_str().to_string(), email.to_string(), code.to_string()));
        Box::pin(async { Ok(()) })
    }
}

const MANIFEST: &str = r#"{
  "entities": [
    {"name": "Todo", "fields": [{"name": "title", "type": "string"}, {"name": "ownerId", "type": "string"}]},
    {"name": "Note", "fields": [{"name": "body", "type": "string"}]}],
  "policies": [
    {"entity": "Todo", "read": "auth.userId == data.ownerId", "write": "auth.userId == data.ownerId"},
    {"entity": "Note", "read": "true", "insert": "auth.verified == true", "update": "false", "delete": "false"}]
}"#;

const PASSWORD: &str = "correct horse battery";

fn bearer(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

fn anon_post(path: &str, body: Value) -> TestRequest {
    TestRequest::post().uri(path).insert_header(("Origin", ORIGIN)).set_json(body)
}

fn user_post(path: &str, token: &str, body: Value) -> TestRequest {
    bearer(TestRequest::post().uri(path).set_json(body), token)
}

fn token(body: &Value) -> String {
    body["token"].as_str().unwrap_or_else(|| panic!("no token in {body}")).to_string()
}

macro_rules! app_on {
    ($config:expr, $tx:expr) => {{
        let state = plaza::build_state_full($config, AppManifest::from_json(MANIFEST).unwrap(), Arc::new(Capture($tx))).unwrap();
        test::init_service(App::new().configure(plaza::configure(state))).await
    }};
}

/// The last code captured for `purpose`.
fn code_for(rx: &mpsc::Receiver<(String, String, String)>, purpose: &str) -> Option<(String, String)> {
    let mut last = None;
    while let Ok((p, email, code)) = rx.try_recv() {
        if p == purpose {
            last = Some((email, code));
        }
    }
    last
}

async fn settle() {
    // Background deliveries (reset codes) run on the test's arbiter.
    for _ in 0..20 {
        actix_web::rt::task::yield_now().await;
    }
}

#[actix_web::test]
async fn register_login_change_and_reset() {
    let (tx, rx) = mpsc::channel();
    let app = app_on!(config(), tx);
    for (password, why) in [("short", "at least 10"), ("password123", "too common"), ("ann@example.com", "email")] {
        let (status, body) = call(&app, anon_post("/api/auth/password/register", json!({"email":"ann@example.com","password":password}))).await;
        assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"), "{password}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(why), "{body}");
    }
    let (status, reg) = call(&app, anon_post("/api/auth/password/register", json!({"email":" Ann@Example.com ","password":PASSWORD}))).await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    let user_id = reg["user_id"].as_str().unwrap().to_string();
    let first = token(&reg);
    let (status, body) = call(&app, anon_post("/api/auth/password/register", json!({"email":"ann@example.com","password":PASSWORD}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "CONFLICT"));

    let (status, login) = call(&app, anon_post("/api/auth/password/login", json!({"email":"ANN@example.com","password":PASSWORD}))).await;
    assert_eq!(status, StatusCode::CREATED, "{login}");
    assert_eq!(login["user_id"], user_id.as_str());
    let second = token(&login);
    let (_, me) = call(&app, bearer(get("/api/auth/me"), &second)).await;
    assert_eq!(me, json!({"user_id": user_id, "guest": false, "admin": false}));

    // Wrong password, unknown email: the same status and body.
    let (s1, wrong) = call(&app, anon_post("/api/auth/password/login", json!({"email":"ann@example.com","password":"not the password"}))).await;
    let (s2, unknown) = call(&app, anon_post("/api/auth/password/login", json!({"email":"nobody@example.com","password":"not the password"}))).await;
    assert_eq!((s1, &wrong), (s2, &unknown));
    assert_eq!(s1, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&wrong), "UNAUTHORIZED");

    // Change: the old password must be right; other sessions end, this one stays.
    let change = |old: &str, new: &str| json!({"old_password": old, "new_password": new});
    let (status, body) = call(&app, user_post("/api/auth/password/change", &second, change("wrong wrong wrong", "a new long passphrase"))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    let (status, body) = call(&app, user_post("/api/auth/password/change", &second, change(PASSWORD, "a new long passphrase"))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true, "revoked": 1})));
    assert_eq!(call(&app, bearer(get("/api/auth/me"), &first)).await.0, StatusCode::UNAUTHORIZED, "other session revoked");
    assert_eq!(call(&app, bearer(get("/api/auth/me"), &second)).await.0, StatusCode::OK, "the caller's own stays");
    let (status, _) = call(&app, anon_post("/api/auth/password/login", json!({"email":"ann@example.com","password":PASSWORD}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "old password no longer works");

    // Reset: the same answer for known and unknown addresses; only the known one gets a code.
    let (s1, unknown) = call(&app, anon_post("/api/auth/password/reset/request", json!({"email":"nobody@example.com"}))).await;
    settle().await;
    assert!(code_for(&rx, "password_reset").is_none());
    let (s2, known) = call(&app, anon_post("/api/auth/password/reset/request", json!({"email":"ann@example.com"}))).await;
    assert_eq!((s1, &unknown), (s2, &known));
    assert_eq!((s2, known), (StatusCode::OK, json!({"sent": true})));
    settle().await;
    let (email, code) = code_for(&rx, "password_reset").expect("a reset code was sent");
    assert_eq!(email, "ann@example.com");
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let reset = |code: &str| json!({"email":"ann@example.com","code":code,"password":"reset to this passphrase"});
    let (status, body) = call(&app, anon_post("/api/auth/password/reset/complete", reset(wrong_code))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    let (status, body) = call(&app, anon_post("/api/auth/password/reset/complete", reset(&code))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["user_id"], user_id.as_str());
    assert_eq!(call(&app, bearer(get("/api/auth/me"), &second)).await.0, StatusCode::UNAUTHORIZED, "reset ends every session");
    let (status, body) = call(&app, anon_post("/api/auth/password/reset/complete", reset(&code))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "codes are single use");
    let (status, _) = call(&app, anon_post("/api/auth/password/login", json!({"email":"ann@example.com","password":"reset to this passphrase"}))).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[actix_web::test]
async fn failed_logins_lock_the_account_and_the_ip_in_constant_shape() {
    let (tx, _rx) = mpsc::channel();
    let mut cfg = config();
    cfg.accounts.login_max_failures = 3;
    let app = app_on!(cfg, tx);
    call(&app, anon_post("/api/auth/password/register", json!({"email":"bo@example.com","password":PASSWORD}))).await;
    let mut answers = Vec::new();
    for email in ["bo@example.com", "ghost@example.com"] {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (status, body) = call(&app, anon_post("/api/auth/password/login", json!({"email":email,"password":"wrong password!"}))).await;
            seen.push((status, body));
        }
        let resp = test::call_service(&app, anon_post("/api/auth/password/login", json!({"email":email,"password":PASSWORD})).to_request()).await;
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "locked even with the right password");
        let retry: u64 = resp.headers().get("Retry-After").unwrap().to_str().unwrap().parse().unwrap();
        assert!((1..=900).contains(&retry), "{retry}");
        let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
        assert_eq!(error_code(&body), "RATE_LIMITED");
        seen.push((StatusCode::TOO_MANY_REQUESTS, body));
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1], "a real and an unknown account answer alike");
    let (_, metrics) = call(&app, get("/metrics")).await;
    assert_eq!(metrics["accounts"]["failures"], 6);
    assert_eq!(metrics["accounts"]["lockouts"], 2);

    // Per IP: PLAZA_LOGIN_RATE_LIMIT attempts a minute, whatever the account.
    let (tx, _rx) = mpsc::channel();
    let mut cfg = config();
    cfg.accounts.login_rate_limit = 4;
    let app = app_on!(cfg, tx);
    for i in 0..4 {
        let (status, _) = call(&app, anon_post("/api/auth/password/login", json!({"email":format!("u{i}@example.com"),"password":"wrong password!"}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let resp = test::call_service(&app, anon_post("/api/auth/password/login", json!({"email":"u9@example.com","password":"x"})).to_request()).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("Retry-After"));
}

#[actix_web::test]
async fn email_verification_unlocks_auth_verified_policies() {
    let (tx, rx) = mpsc::channel();
    let app = app_on!(config(), tx);
    let (_, reg) = call(&app, anon_post("/api/auth/password/register", json!({"email":"cy@example.com","password":PASSWORD}))).await;
    let t = token(&reg);
    let note = || json!({"body": "hello"});
    let (status, body) = call(&app, user_post("/api/entities/Note", &t, note())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "not verified yet");
    let (status, body) = call(&app, user_post("/api/auth/email/send-verification", &t, json!({}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"sent": true})));
    let (email, code) = code_for(&rx, "verify_email").unwrap();
    assert_eq!(email, "cy@example.com");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, _) = call(&app, user_post("/api/auth/email/verify", &t, json!({"code": wrong}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&app, user_post("/api/auth/email/verify", &t, json!({"code": code}))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"verified": true})));
    let (status, body) = call(&app, user_post("/api/entities/Note", &t, note())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = call(&app, user_post("/api/auth/email/send-verification", &t, json!({}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "already verified");
    let (_, guest) = call(&app, anon_post("/api/auth/guest", json!({}))).await;
    let (status, _) = call(&app, user_post("/api/auth/email/send-verification", &token(&guest), json!({}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "guests have no email");
}

#[actix_web::test]
async fn sessions_are_listed_and_revoked_by_id() {
    let (tx, _rx) = mpsc::channel();
    let app = app_on!(config(), tx);
    let (_, reg) = call(&app, anon_post("/api/auth/password/register", json!({"email":"di@example.com","password":PASSWORD}))).await;
    let t1 = token(&reg);
    let login = anon_post("/api/auth/password/login", json!({"email":"di@example.com","password":PASSWORD}))
        .insert_header(("User-Agent", "phone/1.0"));
    let (_, l) = call(&app, login).await;
    let t2 = token(&l);
    let (status, list) = call(&app, bearer(get("/api/auth/sessions"), &t1)).await;
    assert_eq!(status, StatusCode::OK);
    let sessions = list["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{list}");
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let phone = sessions.iter().find(|s| s["user_agent"] == "phone/1.0").expect("user agent kept");
    assert_eq!(phone["current"], false);
    for field in ["id", "created_at", "last_used_at", "expires_at", "ip"] {
        assert!(phone[field].is_string(), "{field} in {phone}");
    }
    assert!(!list.to_string().contains(&t2[..22]), "no token selector in the list");

    let (_, other) = call(&app, anon_post("/api/auth/password/register", json!({"email":"eve@example.com","password":PASSWORD}))).await;
    let id = phone["id"].as_str().unwrap();
    let del = |t: &str, id: &str| bearer(TestRequest::delete().uri(&format!("/api/auth/sessions/{id}")), t);
    let (status, body) = call(&app, del(&token(&other), id)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "NOT_FOUND"), "not someone else's");
    let (status, _) = call(&app, del(&t1, id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(call(&app, bearer(get("/api/auth/me"), &t2)).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&app, del(&t1, id)).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, get("/api/auth/sessions")).await.0, StatusCode::UNAUTHORIZED);
    let (_, guest) = call(&app, anon_post("/api/auth/guest", json!({})).insert_header(("User-Agent", "game/2"))).await;
    let (_, list) = call(&app, bearer(get("/api/auth/sessions"), &token(&guest))).await;
    assert_eq!(list["sessions"][0]["user_agent"], "game/2", "guest sessions record where they came from too");
}

#[actix_web::test]
async fn api_keys_are_shown_once_scoped_and_revocable() {
    let (tx, _rx) = mpsc::channel();
    let app = app_on!(config(), tx);
    let (_, reg) = call(&app, anon_post("/api/auth/password/register", json!({"email":"fay@example.com","password":PASSWORD}))).await;
    let (t, user_id) = (token(&reg), reg["user_id"].as_str().unwrap().to_string());
    let (status, ro) = call(&app, user_post("/api/auth/api-keys", &t, json!({"name":"reporting","scope":"read"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{ro}");
    assert_eq!((ro["name"].clone(), ro["scope"].clone()), (json!("reporting"), json!("read")));
    let (_, rw) = call(&app, user_post("/api/auth/api-keys", &t, json!({"name":"sync job","scope":"read_write"}))).await;
    let (ro_key, rw_key) = (ro["key"].as_str().unwrap().to_string(), rw["key"].as_str().unwrap().to_string());
    let (status, body) = call(&app, user_post("/api/auth/api-keys", &t, json!({"name":"x","scope":"admin"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"));

    let (_, list) = call(&app, bearer(get("/api/auth/api-keys"), &t)).await;
    assert_eq!(list["api_keys"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains(&ro_key), "keys are never shown again");
    let (_, sessions) = call(&app, bearer(get("/api/auth/sessions"), &t)).await;
    assert_eq!(sessions["sessions"].as_array().unwrap().len(), 1, "keys are not sessions");

    let todo = json!({"title":"t","ownerId": user_id});
    let (status, body) = call(&app, user_post("/api/entities/Todo", &ro_key, todo.clone())).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "read-only key cannot write");
    let (status, row) = call(&app, user_post("/api/entities/Todo", &rw_key, todo)).await;
    assert_eq!(status, StatusCode::CREATED, "{row}");
    let (status, rows) = call(&app, bearer(get("/api/entities/Todo"), &ro_key)).await;
    assert_eq!((status, rows["data"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)), "read-only key reads");
    let (status, body) = call(&app, user_post("/api/sync/push", &ro_key, json!({"changes":[{"op_id":"a","entity":"Todo","kind":"insert","data":{"title":"x","ownerId":user_id}}]}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["results"][0]["ok"], false, "push through a read-only key is refused: {body}");
    // Room writes do not go through row policies; they refuse a read-only key too (joining is reading).
    let (status, body) = call(&app, user_post("/api/rooms/join", &ro_key, json!({"room":"lobby"}))).await;
    assert_eq!(status, StatusCode::OK, "a read-only key may join: {body}");
    for (path, payload) in [
        ("/api/rooms/broadcast", json!({"room":"lobby","event":"hi","data":1})),
        ("/api/rooms/state", json!({"room":"lobby","patch":{"a":1}})),
    ] {
        let (status, body) = call(&app, user_post(path, &ro_key, payload)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "{path}: {body}");
    }
    assert_eq!(call(&app, user_post("/api/auth/api-keys", &rw_key, json!({"name":"y"}))).await.0, StatusCode::FORBIDDEN, "keys cannot mint keys");
    assert_eq!(call(&app, bearer(get("/api/auth/sessions"), &ro_key)).await.0, StatusCode::FORBIDDEN);

    let id = ro["id"].as_str().unwrap();
    let (status, _) = call(&app, bearer(TestRequest::delete().uri(&format!("/api/auth/api-keys/{id}")), &t)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(call(&app, bearer(get("/api/entities/Todo"), &ro_key)).await.0, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn a_guest_upgrade_keeps_the_user_id_and_its_rows() {
    let (tx, _rx) = mpsc::channel();
    let app = app_on!(config(), tx);
    let (_, guest) = call(&app, anon_post("/api/auth/guest", json!({}))).await;
    let (g, guest_id) = (token(&guest), guest["user_id"].as_str().unwrap().to_string());
    let (status, row) = call(&app, user_post("/api/entities/Todo", &g, json!({"title":"mine","ownerId":guest_id}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let row_id = row["id"].as_str().unwrap().to_string();

    let (status, body) = call(&app, user_post("/api/auth/upgrade", &g, json!({"email":"gil@example.com","password":"short"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"));
    let (status, up) = call(&app, user_post("/api/auth/upgrade", &g, json!({"email":"gil@example.com","password":PASSWORD}))).await;
    assert_eq!(status, StatusCode::CREATED, "{up}");
    assert_eq!(up["user_id"], guest_id.as_str(), "same user id");
    assert!(up.get("guest").is_none());
    let t = token(&up);
    assert_eq!(call(&app, bearer(get("/api/auth/me"), &g)).await.0, StatusCode::UNAUTHORIZED, "the guest token ends");
    let (_, me) = call(&app, bearer(get("/api/auth/me"), &t)).await;
    assert_eq!(me, json!({"user_id": guest_id, "guest": false, "admin": false}));
    let (status, got) = call(&app, bearer(get(&format!("/api/entities/Todo/{row_id}")), &t)).await;
    assert_eq!((status, got["title"].clone()), (StatusCode::OK, json!("mine")), "the guest's row is still theirs");
    let (status, l) = call(&app, anon_post("/api/auth/password/login", json!({"email":"gil@example.com","password":PASSWORD}))).await;
    assert_eq!((status, l["user_id"].clone()), (StatusCode::CREATED, json!(guest_id)));
    let (status, _) = call(&app, user_post("/api/auth/upgrade", &t, json!({"email":"gil2@example.com","password":PASSWORD}))).await;
    assert_eq!(status, StatusCode::CONFLICT, "only guests upgrade");
}

#[actix_web::test]
async fn accounts_sessions_and_keys_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || Config { in_memory: false, db: dir.path().join("plaza.db"), ..config() };
    let (tx, rx) = mpsc::channel();
    let (session, key) = {
        let app = app_on!(cfg(), tx);
        let (_, reg) = call(&app, anon_post("/api/auth/password/register", json!({"email":"hal@example.com","password":PASSWORD}))).await;
        let t = token(&reg);
        call(&app, user_post("/api/auth/email/send-verification", &t, json!({}))).await;
        let (_, code) = code_for(&rx, "verify_email").unwrap();
        assert_eq!(call(&app, user_post("/api/auth/email/verify", &t, json!({"code": code}))).await.0, StatusCode::OK);
        let (_, key) = call(&app, user_post("/api/auth/api-keys", &t, json!({"name":"k","scope":"read_write"}))).await;
        (t, key["key"].as_str().unwrap().to_string())
    };
    let (tx, _rx) = mpsc::channel();
    let app = app_on!(cfg(), tx);
    assert_eq!(call(&app, bearer(get("/api/auth/me"), &session)).await.0, StatusCode::OK, "session survives");
    let (status, _) = call(&app, user_post("/api/entities/Note", &session, json!({"body":"still verified"}))).await;
    assert_eq!(status, StatusCode::CREATED, "auth.verified survives");
    assert_eq!(call(&app, user_post("/api/entities/Note", &key, json!({"body":"key"}))).await.0, StatusCode::CREATED, "key survives");
    let (_, keys) = call(&app, bearer(get("/api/auth/api-keys"), &session)).await;
    assert_eq!(keys["api_keys"][0]["scope"], "read_write");
    let (status, _) = call(&app, anon_post("/api/auth/password/login", json!({"email":"hal@example.com","password":PASSWORD}))).await;
    assert_eq!(status, StatusCode::CREATED, "password survives");
    let (status, body) = call(&app, anon_post("/api/auth/password/register", json!({"email":"hal@example.com","password":PASSWORD}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "CONFLICT"), "the email is still taken");
}

/// The code an authenticator app shows `offset_steps` steps from now.
fn totp_code(secret_b32: &str, offset_steps: i64) -> String {
    let secret = totp_rs::Secret::Encoded(secret_b32.to_string()).to_bytes().unwrap();
    let t = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, secret, None, String::new());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    t.generate((now + offset_steps * 30) as u64)
}

#[actix_web::test]
async fn totp_second_factor_with_single_use_backup_codes() {
    let (tx, _rx) = mpsc::channel();
    let app = app_on!(config(), tx);
    let (_, reg) = call(&app, anon_post("/api/auth/password/register", json!({"email":"ida@example.com","password":PASSWORD}))).await;
    let (status, body) = call(&app, user_post("/api/auth/totp/enroll", &token(&reg), json!({}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE"), "no key, no TOTP: {body}");

    let dir = tempfile::tempdir().unwrap();
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let cfg = || {
        let mut c = Config { in_memory: false, db: dir.path().join("plaza.db"), ..config() };
        c.accounts.accounts_key = Some(key.into());
        c
    };
    let (tx, _rx) = mpsc::channel();
    let app = app_on!(cfg(), tx);
    let (_, reg) = call(&app, anon_post("/api/auth/password/register", json!({"email":"ida@example.com","password":PASSWORD}))).await;
    let t = token(&reg);
    let (status, enrolled) = call(&app, user_post("/api/auth/totp/enroll", &t, json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{enrolled}");
    let secret = enrolled["secret"].as_str().unwrap().to_string();
    let uri = enrolled["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/Plaza:ida%40example.com?") || uri.starts_with("otpauth://totp/Plaza:ida@example.com?"), "{uri}");
    assert!(uri.contains(&format!("secret={secret}")));
    assert!(enrolled["qr_svg"].as_str().unwrap().starts_with("<?xml"), "a QR code of the URI");

    let wrong = if totp_code(&secret, 0) == "000000" { "111111" } else { "000000" };
    let (status, _) = call(&app, user_post("/api/auth/totp/verify", &t, json!({"code": wrong}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, on) = call(&app, user_post("/api/auth/totp/verify", &t, json!({"code": totp_code(&secret, 0)}))).await;
    assert_eq!(status, StatusCode::OK, "{on}");
    let backups: Vec<String> = on["backup_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    assert_eq!(backups.len(), 10);

    // The secret is sealed at rest: neither its bytes nor its base32 are in the table.
    let conn = rusqlite::Connection::open(dir.path().join("plaza.db")).unwrap();
    let stored: Vec<u8> = conn.query_row("SELECT totp_secret FROM _plaza_users", [], |r| r.get(0)).unwrap();
    let raw = totp_rs::Secret::Encoded(secret.clone()).to_bytes().unwrap();
    assert_eq!(stored.len(), 24 + raw.len() + 16, "nonce + ciphertext + tag");
    assert!(!stored.windows(raw.len()).any(|w| w == raw.as_slice()));
    assert!(!String::from_utf8_lossy(&stored).contains(&secret));

    let login = || anon_post("/api/auth/password/login", json!({"email":"ida@example.com","password":PASSWORD}));
    let (status, first) = call(&app, login()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["mfa_required"], true, "{first}");
    assert!(first.get("token").is_none(), "no session before the second factor");
    let mfa = first["mfa_token"].as_str().unwrap().to_string();
    let (status, body) = call(&app, anon_post("/api/auth/totp/verify", json!({"mfa_token": mfa, "code": totp_code(&secret, 0)}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a code is accepted once: {body}");
    let (status, s) = call(&app, anon_post("/api/auth/totp/verify", json!({"mfa_token": mfa, "code": backups[0]}))).await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    assert_eq!(call(&app, bearer(get("/api/auth/me"), &token(&s))).await.0, StatusCode::OK);
    let (status, _) = call(&app, anon_post("/api/auth/totp/verify", json!({"mfa_token": mfa, "code": backups[1]}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "an mfa token is single use");

    let (_, second) = call(&app, login()).await;
    let mfa = second["mfa_token"].as_str().unwrap().to_string();
    let (status, _) = call(&app, anon_post("/api/auth/totp/verify", json!({"mfa_token": mfa, "code": backups[0]}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a backup code is single use");
    drop(app);

    // After a restart (same key): still on, and the next step's code signs in.
    let (tx, _rx) = mpsc::channel();
    let app = app_on!(cfg(), tx);
    let (_, third) = call(&app, login()).await;
    let mfa = third["mfa_token"].as_str().expect("TOTP survives a restart").to_string();
    let (status, _) = call(&app, anon_post("/api/auth/totp/verify", json!({"mfa_token": mfa, "code": totp_code(&secret, 0)}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a used time step stays used after a restart");
    let (status, s) = call(&app, anon_post("/api/auth/totp/verify", json!({"mfa_token": mfa, "code": totp_code(&secret, 1)}))).await;
    assert_eq!(status, StatusCode::CREATED, "{s}");
    let t = token(&s);
    let (status, _) = call(&app, user_post("/api/auth/totp/disable", &t, json!({"code": backups[0]}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "used backup code stays used after restart");
    let (status, off) = call(&app, user_post("/api/auth/totp/disable", &t, json!({"code": backups[2]}))).await;
    assert_eq!((status, off), (StatusCode::OK, json!({"enabled": false})));
    let (status, plain) = call(&app, login()).await;
    assert_eq!(status, StatusCode::CREATED, "no second factor any more: {plain}");
}

#[actix_web::test]
async fn raising_the_argon2_cost_rehashes_on_the_next_login() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |memory_kib: u32| {
        let mut c = Config { in_memory: false, db: dir.path().join("plaza.db"), ..config() };
        c.accounts.argon2_memory_kib = memory_kib;
        c
    };
    let stored = || -> String {
        let conn = rusqlite::Connection::open(dir.path().join("plaza.db")).unwrap();
        conn.query_row("SELECT password_hash FROM _plaza_users", [], |r| r.get(0)).unwrap()
    };
    {
        let (tx, _rx) = mpsc::channel();
        let app = app_on!(cfg(256), tx);
        call(&app, anon_post("/api/auth/password/register", json!({"email":"jo@example.com","password":PASSWORD}))).await;
    }
    assert!(stored().starts_with("$argon2id$v=19$m=256,"), "{}", stored());
    let (tx, _rx) = mpsc::channel();
    let app = app_on!(cfg(512), tx);
    let login = || anon_post("/api/auth/password/login", json!({"email":"jo@example.com","password":PASSWORD}));
    assert_eq!(call(&app, login()).await.0, StatusCode::CREATED, "an old hash still verifies");
    let mut rehashed = false;
    for _ in 0..100 {
        if stored().starts_with("$argon2id$v=19$m=512,") {
            rehashed = true;
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(rehashed, "{}", stored());
    assert_eq!(call(&app, login()).await.0, StatusCode::CREATED, "and the new one too");
}

#[actix_web::test]
async fn bad_input_gets_clear_errors() {
    let (tx, _rx) = mpsc::channel();
    let app = app_on!(config(), tx);
    let register = "/api/auth/password/register";
    for (body, code) in [
        (json!({}), "VALIDATION"),
        (json!({"email": 5, "password": PASSWORD}), "VALIDATION"),
        (json!({"email": "not-an-address", "password": PASSWORD}), "VALIDATION"),
        (json!({"email": "k@example.com", "password": "p".repeat(100) + &"q".repeat(2000)}), "VALIDATION"),
    ] {
        let (status, b) = call(&app, anon_post(register, body.clone())).await;
        assert_eq!((status, error_code(&b)), (StatusCode::BAD_REQUEST, code), "{body}");
        assert!(b["error"]["message"].is_string());
    }
    let raw = TestRequest::post().uri(register).insert_header(("Origin", ORIGIN)).set_payload("{nope");
    assert_eq!(error_code(&call(&app, raw).await.1), "INVALID_JSON");
    let no_origin = TestRequest::post().uri(register).set_json(json!({"email":"k@example.com","password":PASSWORD}));
    assert_eq!(error_code(&call(&app, no_origin).await.1), "CSRF", "anonymous state changes need an allowed Origin");
    let (_, reg) = call(&app, anon_post(register, json!({"email":"k@example.com","password":PASSWORD}))).await;
    let t = token(&reg);
    for (path, body) in [
        ("/api/auth/email/verify", json!({"code": [1]})),
        ("/api/auth/api-keys", json!({"name": "x".repeat(101)})),
        ("/api/auth/api-keys", json!({"name": ""})),
        ("/api/auth/password/change", json!({"old_password": PASSWORD})),
    ] {
        let (status, b) = call(&app, user_post(path, &t, body.clone())).await;
        assert_eq!((status, error_code(&b)), (StatusCode::BAD_REQUEST, "VALIDATION"), "{path} {body}");
    }
    let (status, b) = call(&app, bearer(TestRequest::delete().uri("/api/auth/sessions/%00%ff"), &t)).await;
    assert_eq!((status, error_code(&b)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    let (status, b) = call(&app, user_post("/api/auth/totp/verify", "x", json!({"mfa_token":"made-up","code":"123456"}))).await;
    assert_eq!((status, error_code(&b)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "a bad bearer is 401 before anything");
    let (status, b) = call(&app, anon_post("/api/auth/totp/verify", json!({"mfa_token":"made-up","code":"123456"}))).await;
    assert_eq!((status, error_code(&b)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"));
    let (status, b) = call(&app, anon_post("/api/auth/totp/verify", json!({"code":"123456"}))).await;
    assert_eq!((status, error_code(&b)), (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"), "no session, no mfa token");
}

#[actix_web::test]
async fn a_full_hashing_queue_answers_overloaded_instead_of_waiting_without_bound() {
    let (tx, _rx) = mpsc::channel();
    let mut cfg = config();
    cfg.accounts.argon2_memory_kib = 4096;
    cfg.accounts.argon2_iterations = 2;
    let app = app_on!(cfg, tx);
    let logins = (0..80).map(|i| {
        let req = anon_post("/api/auth/password/login", json!({"email": format!("n{i}@example.com"), "password": "wrong password!"}));
        test::call_service(&app, req.to_request())
    });
    let answers = futures_util::future::join_all(logins).await;
    let statuses: Vec<StatusCode> = answers.iter().map(|r| r.status()).collect();
    let busy = answers.iter().filter(|r| r.status() == StatusCode::SERVICE_UNAVAILABLE).collect::<Vec<_>>();
    assert!(!busy.is_empty(), "{statuses:?}");
    assert_eq!(busy[0].headers().get("Retry-After").unwrap(), "1");
    assert!(statuses.iter().all(|s| *s == StatusCode::UNAUTHORIZED || *s == StatusCode::SERVICE_UNAVAILABLE), "{statuses:?}");
    let refused = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    assert!(refused >= plaza_actors::accounts::MAX_QUEUED_HASHES_PER_THREAD, "the queue's worth were answered: {refused}");
}

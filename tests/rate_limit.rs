//! The rate limit keys on who a request really is: made-up tokens count against the client IP,
//! a session against its user, the admin not at all; forwarded-for headers are believed only
//! from trusted proxies; session creation has its own per-IP limit.

mod common;

use std::net::SocketAddr;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use common::*;
use plaza::config::Config;
use serde_json::{json, Value};

fn from(req: TestRequest, addr: &str) -> TestRequest {
    req.peer_addr(format!("{addr}:40000").parse::<SocketAddr>().unwrap())
}

fn bearer(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

/// Distinct token-shaped strings, as an attacker would invent them.
fn made_up_tokens() -> impl Iterator<Item = String> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    std::iter::repeat_with(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        format!("{x:016x}{:016x}{x:016x}{:016x}", x.rotate_left(17), x.rotate_left(41))
    })
}

async fn session_for<S, B>(app: &S, user: &str) -> String
where
    S: actix_web::dev::Service<actix_http::Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let (status, s) = call(app, post("/api/auth/session", json!({"user_id": user}))).await;
    assert_eq!(status, StatusCode::CREATED);
    s["token"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn made_up_tokens_count_against_the_client_ip() {
    let limit = 50;
    // A day-long window: no refill can land while the 10,000 requests run, so the count is exact.
    let config = Config { rate_limit_max: limit, rate_limit_window_secs: 86_400, ..config() };
    let state = plaza::build_state_with(config, todo_manifest()).unwrap();
    let app = test::init_service(actix_web::App::new().configure(plaza::configure(state.clone()))).await;
    let (mut unauthorized, mut limited) = (0, 0);
    for token in made_up_tokens().take(10_000) {
        let (status, body) = call(&app, from(bearer(get("/api/entities/Todo"), &token), "203.0.113.5")).await;
        match status {
            StatusCode::UNAUTHORIZED => unauthorized += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert_eq!(error_code(&body), "RATE_LIMITED");
                limited += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(unauthorized, limit, "only the first {limit} get as far as the token check");
    assert_eq!(limited, 10_000 - limit);
    assert_eq!(state.rate_limit.requests.keys(), 1, "one key for the IP, none per invented token");
    state.rate_limit.prune();
    assert_eq!(state.rate_limit.requests.keys(), 1, "pruning keeps a client that still owes time");
    let (status, _) = call(&app, from(get("/api/entities/Todo"), "203.0.113.5")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "dropping the token does not help either");
    let (status, _) = call(&app, from(get("/api/entities/Todo"), "203.0.113.6")).await;
    assert_eq!(status, StatusCode::OK, "another client is not affected");
}

#[actix_web::test]
async fn a_session_is_limited_per_user_not_per_ip() {
    let app = app_with(Config { rate_limit_max: 5, rate_limit_window_secs: 86_400, ..config() }).await;
    let alice = session_for(&app, "alice").await;
    let bob = session_for(&app, "bob").await;
    for _ in 0..5 {
        assert_eq!(call(&app, from(bearer(get("/api/auth/me"), &alice), "198.51.100.1")).await.0, StatusCode::OK);
    }
    let resp = test::call_service(&app, from(bearer(get("/api/auth/me"), &alice), "198.51.100.1").to_request()).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "Retry-After is at least a second");
    let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED");
    assert!(body["error"]["message"].as_str().unwrap().contains("retry"));
    let (status, _) = call(&app, from(bearer(get("/api/auth/me"), &alice), "198.51.100.99")).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "a new IP does not reset alice's budget");
    let (status, me) = call(&app, from(bearer(get("/api/auth/me"), &bob), "198.51.100.1")).await;
    assert_eq!((status, me["user_id"].as_str()), (StatusCode::OK, Some("bob")), "bob shares alice's IP, not her budget");
    let (status, _) = call(&app, from(get("/api/entities/Todo"), "198.51.100.1")).await;
    assert_eq!(status, StatusCode::OK, "anonymous requests from that IP have their own budget");
}

#[actix_web::test]
async fn the_admin_token_is_exempt() {
    let app = app_with(Config { rate_limit_max: 2, rate_limit_window_secs: 86_400, session_rate_limit: 2, ..config() }).await;
    for i in 0..20 {
        let (status, _) = call(&app, from(admin(get("/api/entities/Todo")), "192.0.2.1")).await;
        assert_eq!(status, StatusCode::OK, "admin request {i}");
        let (status, _) = call(&app, from(post("/api/auth/session", json!({"user_id": format!("u{i}")})), "192.0.2.1")).await;
        assert_eq!(status, StatusCode::CREATED, "admin-minted session {i}");
    }
    // A token that is the admin token with one byte changed is just a bad token.
    let almost = format!("{}X", &ADMIN[..ADMIN.len() - 1]);
    let statuses: Vec<_> = three_requests_with(&app, &almost).await;
    assert_eq!(statuses, [StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS]);
}

async fn three_requests_with<S, B>(app: &S, token: &str) -> Vec<StatusCode>
where
    S: actix_web::dev::Service<actix_http::Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let mut out = Vec::new();
    for _ in 0..3 {
        out.push(call(app, from(bearer(get("/api/entities/Todo"), token), "192.0.2.1")).await.0);
    }
    out
}

#[actix_web::test]
async fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let trusted = vec!["10.0.0.0/8".parse().unwrap()];
    let app = app_with(Config { rate_limit_max: 3, rate_limit_window_secs: 86_400, trusted_proxies: trusted, ..config() }).await;
    let via_proxy = |client: &str| from(get("/health"), "10.1.2.3").insert_header(("X-Forwarded-For", format!("6.6.6.6, {client}")));
    for _ in 0..3 {
        assert_eq!(call(&app, via_proxy("203.0.113.10")).await.0, StatusCode::OK);
    }
    assert_eq!(call(&app, via_proxy("203.0.113.10")).await.0, StatusCode::TOO_MANY_REQUESTS, "the client behind the proxy is limited");
    assert_eq!(call(&app, via_proxy("203.0.113.11")).await.0, StatusCode::OK, "not the proxy itself");
    let forwarded = from(get("/health"), "10.1.2.3").insert_header(("Forwarded", "for=\"[2001:db8::1]:1234\""));
    assert_eq!(call(&app, forwarded).await.0, StatusCode::OK, "RFC 7239 Forwarded is read too");

    // From an untrusted peer the header is the client's own claim: a fresh one each time buys nothing.
    let mut statuses = Vec::new();
    for i in 0..5 {
        let req = from(get("/health"), "198.51.100.7").insert_header(("X-Forwarded-For", format!("192.0.2.{i}")));
        statuses.push(call(&app, req).await.0);
    }
    assert_eq!(&statuses[3..], [StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS]);
}

#[actix_web::test]
async fn session_creation_is_limited_per_ip() {
    let app = app_with(Config { session_rate_limit: 4, ..config() }).await;
    let guest = |ip: &str| from(TestRequest::post().uri("/api/auth/guest").insert_header(("Origin", ORIGIN)), ip);
    for _ in 0..4 {
        assert_eq!(call(&app, guest("203.0.113.20")).await.0, StatusCode::CREATED);
    }
    let resp = test::call_service(&app, guest("203.0.113.20").to_request()).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get("retry-after").unwrap().to_str().unwrap().parse::<u64>().unwrap() >= 1);
    let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED");
    let magic = from(TestRequest::post().uri("/api/auth/magic/send").insert_header(("Origin", ORIGIN)), "203.0.113.20")
        .set_json(json!({"email": "a@example.com"}));
    assert_eq!(call(&app, magic).await.0, StatusCode::TOO_MANY_REQUESTS, "magic codes share the budget");
    assert_eq!(call(&app, guest("203.0.113.21")).await.0, StatusCode::CREATED, "another IP still gets a guest session");
    assert_eq!(call(&app, from(get("/api/entities/Todo"), "203.0.113.20")).await.0, StatusCode::OK, "other routes are not affected");
}

#[test]
fn trusted_proxies_come_from_the_flag_or_the_config_file() {
    use clap::Parser;
    let cli = plaza::config::Cli::parse_from(["plaza", "--trusted-proxies", "10.0.0.0/8, 127.0.0.1,::1"]);
    let config = Config::from_args(&cli.serve).unwrap();
    let shown: Vec<String> = config.trusted_proxies.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]);
    let cli = plaza::config::Cli::parse_from(["plaza", "--trusted-proxies", "10.0.0.0/8,proxy.local"]);
    let refused = Config::from_args(&cli.serve).unwrap_err();
    assert!(refused.contains("PLAZA_TRUSTED_PROXIES") && refused.contains("proxy.local"), "{refused}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plaza.toml");
    std::fs::write(&file, "trusted_proxies = [\"192.168.0.0/16\", \"127.0.0.1\"]\nsession_rate_limit = 7\n").unwrap();
    let cli = plaza::config::Cli::parse_from(["plaza", "--config", file.to_str().unwrap()]);
    let config = Config::from_args(&cli.serve).unwrap();
    assert_eq!(config.trusted_proxies.len(), 2);
    assert_eq!(config.session_rate_limit, 7);
}

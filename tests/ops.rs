//! Operations and the cross-cutting middleware: health, readiness, metrics (JSON and
//! Prometheus), OpenAPI, CORS, security headers, body limit, rate limit, CSRF.

mod common;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use common::*;
use plaza::config::Config;
use serde_json::{json, Value};

#[actix_web::test]
async fn health_and_ready() {
    let app = app().await;
    let (status, body) = call(&app, get("/health")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert!(body["uptime_s"].is_u64());
    let (status, body) = call(&app, get("/ready")).await;
    assert_eq!((status, body["status"].clone()), (StatusCode::OK, json!("ready")));
}

#[actix_web::test]
async fn metrics_as_json_and_prometheus() {
    let app = app().await;
    call(&app, post("/api/entities/Todo", json!({"title":"a","done":false}))).await;
    call(&app, get("/api/entities/Todo")).await;
    let (status, body) = call(&app, get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["requests"]["total"].as_u64().unwrap() >= 2);
    let route = &body["requests"]["routes"]["POST /api/entities/{entity}"];
    assert_eq!(route["count"], 1);
    assert!(route["p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(body["changelog"]["last_seq"], 1);

    let resp = test::call_service(&app, get("/metrics").insert_header(("Accept", "text/plain")).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("content-type").unwrap().to_str().unwrap().starts_with("text/plain"));
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(text.contains("# TYPE plaza_requests_total counter"), "{text}");
    assert!(text.contains("plaza_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/entities/{entity}\""), "{text}");
}

#[actix_web::test]
async fn openapi_lists_every_route() {
    let app = app().await;
    let (status, doc) = call(&app, get("/api/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    let typed: openapiv3::OpenAPI = serde_json::from_value(doc.clone()).expect("a valid OpenAPI 3.0 document");
    assert!(typed.paths.paths.len() > 10);
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() > 10, "{} paths", paths.len());
    assert!(paths.contains_key("/api/entities/{Entity}/{id}"), "path case is preserved");
    assert!(paths.contains_key("/api/entities/Todo"), "manifest entities get their own paths");
    assert_eq!(doc["components"]["schemas"]["Todo"]["properties"]["done"]["type"], "integer");
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            assert!(op["responses"].is_object(), "{method} {path} has responses");
            let uri = path.replace("{Entity}", "Todo").replace("{id}", "x");
            let req = admin(TestRequest::default().method(method.to_uppercase().parse().unwrap()).uri(&uri)).set_payload("{}");
            let (_, body) = call(&app, req).await;
            assert_ne!(error_code(&body), "ROUTE_NOT_FOUND", "{method} {path} is documented but not served");
            assert_ne!(error_code(&body), "METHOD_NOT_ALLOWED", "{method} {path} is documented but not served");
        }
    }
}

#[actix_web::test]
async fn cors_and_security_headers_on_every_response() {
    let app = app().await;
    for req in [get("/health"), get("/nope"), get("/api/entities/Nope")] {
        let resp = test::call_service(&app, req.insert_header(("Origin", ORIGIN)).to_request()).await;
        let h = resp.headers();
        assert_eq!(h.get("x-content-type-options").unwrap(), "nosniff");
        assert_eq!(h.get("x-frame-options").unwrap(), "DENY");
        assert_eq!(h.get("access-control-allow-origin").unwrap(), ORIGIN);
    }
    let resp = test::call_service(&app, get("/health").to_request()).await;
    assert_eq!(resp.headers().get("access-control-allow-origin").unwrap(), ORIGIN, "no Origin: the configured one");
    let resp = test::call_service(&app, get("/health").insert_header(("Origin", "http://evil.example")).to_request()).await;
    assert_ne!(resp.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap()), Some("http://evil.example"));

    let preflight = TestRequest::default()
        .method(actix_web::http::Method::OPTIONS)
        .uri("/api/entities/Todo")
        .insert_header(("Origin", ORIGIN))
        .insert_header(("Access-Control-Request-Method", "POST"));
    let resp = test::call_service(&app, preflight.to_request()).await;
    assert!(resp.status().is_success());
    assert_eq!(resp.headers().get("access-control-allow-origin").unwrap(), ORIGIN);

    let dev = app_with(Config { dev_mode: true, cors_origins: vec![], ..config() }).await;
    let resp = test::call_service(&dev, get("/health").insert_header(("Origin", "http://any.example")).to_request()).await;
    assert_eq!(resp.headers().get("access-control-allow-origin").unwrap(), "http://any.example");
    let resp = test::call_service(&dev, get("/health").to_request()).await;
    assert_eq!(resp.headers().get("access-control-allow-origin").unwrap(), "*");
}

#[actix_web::test]
async fn production_refuses_a_wildcard_origin() {
    let refused = plaza::build_state_with(Config { cors_origins: vec!["*".into()], ..config() }, todo_manifest());
    assert!(refused.err().unwrap().to_string().contains("PLAZA_CORS_ORIGIN"));
    let dev = plaza::build_state_with(Config { cors_origins: vec!["*".into()], dev_mode: true, ..config() }, todo_manifest());
    assert!(dev.is_ok());
}

#[actix_web::test]
async fn oversized_body_is_413() {
    let app = app_with(Config { max_body_bytes: 1024, ..config() }).await;
    let big = json!({"title": "x".repeat(2048), "done": false});
    let (status, body) = call(&app, post("/api/entities/Todo", big)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"));
    let (status, _) = call(&app, post("/api/entities/Todo", json!({"title":"small","done":false}))).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[actix_web::test]
async fn rate_limit_is_per_client_and_spares_the_admin() {
    let app = app_with(Config { rate_limit_max: 3, rate_limit_window_secs: 60, ..config() }).await;
    for _ in 0..3 {
        assert_eq!(call(&app, get("/health")).await.0, StatusCode::OK);
    }
    let resp = test::call_service(&app, get("/health").to_request()).await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers().get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    let body: Value = serde_json::from_slice(&test::read_body(resp).await).unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED");
    for _ in 0..5 {
        assert_eq!(call(&app, admin(get("/health"))).await.0, StatusCode::OK, "the admin token is exempt");
    }
}

#[actix_web::test]
async fn csrf_guards_requests_without_a_bearer_token() {
    let app = app().await;
    let row = json!({"title":"a","done":false});
    let anon = || TestRequest::post().uri("/api/entities/Todo").set_json(row.clone());
    let (status, body) = call(&app, anon()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "CSRF"));
    let (status, body) = call(&app, anon().insert_header(("Origin", "http://evil.example"))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "CSRF"));
    assert_eq!(call(&app, anon().insert_header(("Origin", ORIGIN))).await.0, StatusCode::CREATED);
    assert_eq!(call(&app, post("/api/entities/Todo", row.clone())).await.0, StatusCode::CREATED, "bearer requests skip the check");
    assert_eq!(call(&app, get("/api/entities/Todo")).await.0, StatusCode::OK, "reads are not state-changing");

    let dev = app_with(Config { dev_mode: true, ..config() }).await;
    assert_eq!(call(&dev, anon().insert_header(("Origin", "http://any.example"))).await.0, StatusCode::CREATED);
    assert_eq!(error_code(&call(&dev, anon()).await.1), "CSRF", "dev mode still wants an Origin");
}

//! The cache over HTTP: commands, TTL expiry on an injected clock, LRU eviction by entries and
//! by bytes, admin only.

mod common;

use actix_web::http::StatusCode;
use actix_web::{test, App};
use common::*;
use plaza_actors::clock::ManualClock;
use serde_json::json;

const T0: i64 = 1_800_000_000_000;

#[actix_rt::test]
async fn commands_ttl_and_admin_only() {
    let clock = ManualClock::new(T0);
    let extras = plaza::Extras { clock: Some(clock.clone()), ..Default::default() };
    let state = plaza::build_state_extras(config(), todo_manifest(), extras).unwrap();
    let app = test::init_service(App::new().configure(plaza::configure(state))).await;

    let (s, b) = call(&app, post("/api/cache", json!({"cmd":"SET","key":"greeting","value":{"hi":[1,2]},"ttl":10}))).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"result":"OK"})));
    let (s, b) = call(&app, admin(get("/api/cache/greeting"))).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"result":{"hi":[1,2]}})));

    // TTL: still there just before, gone at the deadline (GET answers 404 with the error body).
    clock.advance(9_999);
    assert_eq!(call(&app, admin(get("/api/cache/greeting"))).await.0, StatusCode::OK);
    clock.advance(1);
    let (s, b) = call(&app, admin(get("/api/cache/greeting"))).await;
    assert_eq!((s, error_code(&b)), (StatusCode::NOT_FOUND, "NOT_FOUND"));

    // INCR from nothing, by a step, keeps working; on a non-integer it is 400.
    assert_eq!(call(&app, post("/api/cache", json!({"cmd":"INCR","key":"n"}))).await.1, json!({"result":1}));
    assert_eq!(call(&app, post("/api/cache", json!({"cmd":"INCR","key":"n","value":41}))).await.1, json!({"result":42}));
    call(&app, post("/api/cache", json!({"cmd":"SET","key":"s","value":"text"}))).await;
    let (s, b) = call(&app, post("/api/cache", json!({"cmd":"INCR","key":"s"}))).await;
    assert_eq!((s, error_code(&b)), (StatusCode::BAD_REQUEST, "VALIDATION"));

    // EXPIRE on an existing key, DEL by path and by command.
    assert_eq!(call(&app, post("/api/cache", json!({"cmd":"EXPIRE","key":"n","ttl":1}))).await.1, json!({"result":true}));
    assert_eq!(call(&app, post("/api/cache", json!({"cmd":"EXPIRE","key":"none","ttl":1}))).await.1, json!({"result":false}));
    clock.advance(1_000);
    assert_eq!(call(&app, post("/api/cache", json!({"cmd":"GET","key":"n"}))).await.0, StatusCode::NOT_FOUND);
    let (s, b) = call(&app, admin(test::TestRequest::delete().uri("/api/cache/s"))).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"result":true})));
    assert_eq!(call(&app, post("/api/cache", json!({"cmd":"DEL","key":"s"}))).await.1, json!({"result":false}));

    // Bad commands and TTLs are 400; anyone but the admin is 403.
    assert_eq!(call(&app, post("/api/cache", json!({"cmd":"FLUSHALL","key":"x"}))).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(call(&app, post("/api/cache", json!({"cmd":"SET","key":"x","value":1,"ttl":-1}))).await.0, StatusCode::BAD_REQUEST);
    let (s, b) = call(&app, get("/api/cache/greeting")).await;
    assert_eq!((s, error_code(&b)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    let anon = test::TestRequest::post().uri("/api/cache").insert_header(("Origin", ORIGIN)).set_json(json!({"cmd":"GET","key":"n"}));
    assert_eq!(call(&app, anon).await.0, StatusCode::FORBIDDEN);
}

#[actix_rt::test]
async fn least_recently_used_entries_are_evicted_by_count_and_by_bytes() {
    let app = app_with(plaza::config::Config { cache_max_entries: 3, cache_max_bytes: 4096, ..config() }).await;
    for k in ["a", "b", "c"] {
        call(&app, post("/api/cache", json!({"cmd":"SET","key":k,"value":k}))).await;
    }
    // Touch "a", so "b" is now the least recently used; a fourth key evicts it.
    assert_eq!(call(&app, admin(get("/api/cache/a"))).await.0, StatusCode::OK);
    call(&app, post("/api/cache", json!({"cmd":"SET","key":"d","value":"d"}))).await;
    assert_eq!(call(&app, admin(get("/api/cache/b"))).await.0, StatusCode::NOT_FOUND);
    for k in ["a", "c", "d"] {
        assert_eq!(call(&app, admin(get(&format!("/api/cache/{k}")))).await.0, StatusCode::OK, "{k}");
    }
    // A 4,000-byte value leaves room for nothing else under a 4,096-byte bound.
    let big = "x".repeat(4000);
    call(&app, post("/api/cache", json!({"cmd":"SET","key":"big","value":big}))).await;
    assert_eq!(call(&app, admin(get("/api/cache/big"))).await.0, StatusCode::OK);
    for k in ["a", "c", "d"] {
        assert_eq!(call(&app, admin(get(&format!("/api/cache/{k}")))).await.0, StatusCode::NOT_FOUND, "{k}");
    }
    // Larger than the whole cache: refused, not stored.
    let (s, b) = call(&app, post("/api/cache", json!({"cmd":"SET","key":"huge","value":"y".repeat(5000)}))).await;
    assert_eq!((s, error_code(&b)), (StatusCode::BAD_REQUEST, "VALIDATION"));
}

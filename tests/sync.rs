//! Sync pull over the persistent change log: order, paging, and 410 RESYNC_REQUIRED for cursors
//! the log cannot serve (from the future, or pruned by retention).

mod common;

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use common::*;
use serde_json::{json, Value};

fn seqs(body: &Value) -> Vec<i64> {
    body["changes"].as_array().unwrap().iter().map(|c| c["seq"].as_i64().unwrap()).collect()
}

#[actix_web::test]
async fn pull_returns_changes_in_seq_order_with_paging() {
    let app = app().await;
    let (_, created) = call(&app, post("/api/entities/Todo", json!({"title":"a","done":false}))).await;
    let id = created["id"].as_str().unwrap();
    call(&app, admin(TestRequest::patch().uri(&format!("/api/entities/Todo/{id}")).set_json(json!({"done":true})))).await;
    call(&app, admin(TestRequest::delete().uri(&format!("/api/entities/Todo/{id}")))).await;

    let (status, body) = call(&app, get("/api/sync/pull?since=0")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seqs(&body), [1, 2, 3]);
    let kinds: Vec<&str> = body["changes"].as_array().unwrap().iter().map(|c| c["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["insert", "update", "delete"]);
    let first = &body["changes"][0];
    assert_eq!((first["entity"].as_str(), first["row_id"].as_str()), (Some("Todo"), Some(id)));
    assert_eq!(first["data"]["title"], "a");
    assert_eq!(body["changes"][1]["data"]["done"], 1);
    assert!(body["changes"][2].get("data").is_none(), "a delete carries no row");
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["cursor"], json!({"last_seq": 3}));
    assert_eq!(body["has_more"], false);

    let (_, page) = call(&app, get("/api/sync/pull?since=0&limit=2")).await;
    assert_eq!((seqs(&page), page["has_more"].clone()), (vec![1, 2], json!(true)));
    let (_, rest) = call(&app, get("/api/sync/pull?since=2&limit=2")).await;
    assert_eq!((seqs(&rest), rest["has_more"].clone()), (vec![3], json!(false)));
    let (_, none) = call(&app, get("/api/sync/pull?since=3")).await;
    assert_eq!((seqs(&none), none["cursor"]["last_seq"].clone()), (vec![], json!(3)));
}

#[actix_web::test]
async fn future_cursor_is_gone() {
    let app = app().await;
    call(&app, post("/api/entities/Todo", json!({"title":"a","done":false}))).await;
    let (status, body) = call(&app, get("/api/sync/pull?since=99")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "RESYNC_REQUIRED"));
    assert_eq!(body["oldest_seq"], 1);
    let (status, body) = call(&app, get("/api/sync/pull?since=abc")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"));
}

#[actix_web::test]
async fn cursor_pruned_by_retention_is_gone() {
    let app = app_with(plaza::config::Config { changelog_retain: 3, ..config() }).await;
    for i in 0..10 {
        call(&app, post("/api/entities/Todo", json!({"title": format!("t{i}"), "done": false}))).await;
    }
    let (status, body) = call(&app, get("/api/sync/pull?since=2")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::GONE, "RESYNC_REQUIRED"));
    assert_eq!(body["oldest_seq"], 8);
    assert_eq!(body["error"]["oldest_seq"], 8);
    // Whoever has seen seq 7 lost nothing and continues.
    let (status, body) = call(&app, get("/api/sync/pull?since=7")).await;
    assert_eq!((status, seqs(&body)), (StatusCode::OK, vec![8, 9, 10]));
}

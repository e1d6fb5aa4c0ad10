//! Admin bulk operations: batch, transact (all or nothing), export → import.

mod common;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use common::*;
use serde_json::json;

#[actix_web::test]
async fn admin_endpoints_need_the_admin_token() {
    let app = app().await;
    let anon = |path: &str| TestRequest::post().uri(path).insert_header(("Origin", ORIGIN)).set_json(json!([]));
    for path in ["/api/batch", "/api/transact", "/api/import"] {
        let (status, body) = call(&app, anon(path)).await;
        assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "{path}");
        let wrong = anon(path).insert_header(("Authorization", "Bearer wrong"));
        assert_eq!(call(&app, wrong).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(call(&app, get("/api/export")).await.0, StatusCode::FORBIDDEN);
}

#[actix_web::test]
async fn batch_runs_each_op_independently() {
    let app = app().await;
    let ops = json!({"operations": [
        {"op":"insert","entity":"Todo","data":{"title":"a","done":false}},
        {"op":"insert","entity":"Todo","data":{"done":false}},
        {"op":"insert","entity":"User","id":"u1","data":{"email":"u@x.io","displayName":"U"}},
        {"op":"update","entity":"User","id":"u1","data":{"displayName":"V"}},
        {"op":"insert","entity":"User","id":"u2","data":{"email":"u@x.io","displayName":"same email"}},
        {"op":"delete","entity":"Todo","id":"missing"},
        {"op":"explode","entity":"Todo"}
    ]});
    let (status, body) = call(&app, post("/api/batch", ops)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["succeeded"].clone(), body["failed"].clone()), (json!(3), json!(4)));
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.iter().map(|r| r["ok"] == true).collect::<Vec<_>>(), [true, false, true, true, false, false, false]);
    assert_eq!(results[1]["error"]["code"], "VALIDATION");
    assert_eq!(results[4]["error"]["code"], "CONFLICT");
    assert_eq!(results[5]["error"]["code"], "NOT_FOUND");
    let (_, user) = call(&app, get("/api/entities/User/u1")).await;
    assert_eq!(user["displayName"], "V");
    // The op that failed in the database left neither a row nor a change event.
    assert_eq!(call(&app, get("/api/entities/User/u2")).await.0, StatusCode::NOT_FOUND);
    let (_, pulled) = call(&app, get("/api/sync/pull?since=0")).await;
    let seqs: Vec<i64> = pulled["changes"].as_array().unwrap().iter().map(|c| c["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3], "one event per op that succeeded, numbered without gaps");
}

#[actix_web::test]
async fn transact_is_all_or_nothing() {
    let app = app().await;
    let ok = json!([
        {"op":"insert","entity":"User","id":"u1","data":{"email":"a@x.io","displayName":"A"}},
        {"op":"insert","entity":"Todo","id":"t1","data":{"title":"t","done":false,"ownerId":"u1"}},
        {"op":"update","entity":"Todo","id":"t1","data":{"done":true}}
    ]);
    let (status, body) = call(&app, post("/api/transact", ok)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["committed"], true);
    let seqs: Vec<i64> = body["results"].as_array().unwrap().iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, [1, 2, 3], "every committed op is in the change log");

    // The last op collides on the unique email: nothing of this transaction may land.
    let failing = json!({"operations": [
        {"op":"insert","entity":"Todo","id":"t2","data":{"title":"t2","done":false}},
        {"op":"delete","entity":"Todo","id":"t1"},
        {"op":"insert","entity":"User","data":{"email":"a@x.io","displayName":"dup"}}
    ]});
    let (status, body) = call(&app, post("/api/transact", failing)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "CONFLICT"));
    assert_eq!(call(&app, get("/api/entities/Todo/t2")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(call(&app, get("/api/entities/Todo/t1")).await.0, StatusCode::OK);
    let (_, pulled) = call(&app, get("/api/sync/pull?since=0")).await;
    assert_eq!(pulled["changes"].as_array().unwrap().len(), 3, "a rolled-back transaction leaves no change events");

    let invalid = json!([{"op":"insert","entity":"Todo","data":{"title":"x","done":false}}, {"op":"insert","entity":"Todo","data":{}}]);
    let (status, body) = call(&app, post("/api/transact", invalid)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"));
    let (_, list) = call(&app, get("/api/entities/Todo")).await;
    assert_eq!(list["count"], 1);
}

async fn export<S, B>(app: &S) -> String
where
    S: actix_web::dev::Service<actix_http::Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let resp = test::call_service(app, admin(get("/api/export")).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get("content-type").unwrap(), "application/x-ndjson");
    String::from_utf8(test::read_body(resp).await.to_vec()).unwrap()
}

#[actix_web::test]
async fn export_then_import_round_trips() {
    let source = app().await;
    for i in 0..3 {
        call(&source, post("/api/entities/Todo", json!({"title": format!("t{i}"), "done": i == 1, "tags": {"i": i}}))).await;
    }
    call(&source, post("/api/entities/User", json!({"email":"a@x.io","displayName":"A"}))).await;
    let ndjson = export(&source).await;
    assert_eq!(ndjson.lines().count(), 4);

    let target = app().await;
    let req = admin(TestRequest::post().uri("/api/import").set_payload(ndjson.clone()));
    let (status, body) = call(&target, req).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"imported": 4})));
    assert_eq!(export(&target).await, ndjson, "ids, timestamps and values survive the round trip");

    // Importing again collides on ids: all or nothing, so still 4 rows.
    let again = admin(TestRequest::post().uri("/api/import").set_payload(ndjson));
    assert_eq!(call(&target, again).await.0, StatusCode::CONFLICT);
    let array = admin(TestRequest::post().uri("/api/import").set_json(json!([{"entity":"Todo","data":{"title":"n","done":false}}])));
    assert_eq!(call(&target, array).await.1, json!({"imported": 1}));
    let bad = admin(TestRequest::post().uri("/api/import").set_payload("{\"entity\":\"Todo\"\n"));
    assert_eq!(error_code(&call(&target, bad).await.1), "INVALID_JSON");
}

#[actix_web::test]
async fn a_session_may_send_at_most_the_session_bulk_limit_and_the_admin_more() {
    let app = app().await;
    let (_, session) = call(&app, post("/api/auth/session", json!({"user_id": "alice"}))).await;
    let token = session["token"].as_str().unwrap().to_string();
    let inserts = |n: usize| {
        let ops: Vec<_> = (0..n).map(|i| json!({"op":"insert","entity":"Todo","data":{"title":format!("t{i}"),"done":false}})).collect();
        json!({"operations": ops})
    };
    let as_alice = |path: &str, body| TestRequest::post().uri(path).insert_header(("Authorization", format!("Bearer {token}"))).set_json(body);
    for path in ["/api/batch", "/api/transact"] {
        let (status, body) = call(&app, as_alice(path, inserts(101))).await;
        assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"), "{path}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("at most 100"), "{body}");
    }
    let (_, listed) = call(&app, get("/api/entities/Todo")).await;
    assert_eq!(listed["count"], 0, "a refused request writes nothing");

    let (status, body) = call(&app, as_alice("/api/batch", inserts(100))).await;
    assert_eq!((status, body["succeeded"].as_u64()), (StatusCode::OK, Some(100)), "{body}");
    // The batch committed as one unit: its seqs are consecutive.
    let seqs: Vec<i64> = body["results"].as_array().unwrap().iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    let (status, body) = call(&app, post("/api/transact", inserts(101))).await;
    assert_eq!(status, StatusCode::OK, "the admin may send more: {body}");
}

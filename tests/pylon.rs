//! Wire compatibility with Pylon's sync clients, judged by Pylon's own types (`pylon-sync`
//! 0.3.23): requests are built from `PushRequest`/`ClientChange` and Plaza's answers must
//! deserialize into `PullResponse`/`SyncCursor`. The crate has no type for the push answer, so
//! `PushAnswer` below spells the fields its client reads (see API.md "Sync"), with its
//! `SyncCursor`.

mod common;

use actix_web::http::StatusCode;
use actix_web::test;
use common::*;
use pylon_sync::{ChangeKind, ClientChange, PullResponse, PushRequest, SyncCursor};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct PushAnswer {
    applied: u64,
    deduped: u64,
    errors: Vec<String>,
    cursor: SyncCursor,
}

fn change(kind: ChangeKind, row_id: &str, data: Option<serde_json::Value>, op_id: &str) -> ClientChange {
    ClientChange { entity: "Todo".into(), row_id: row_id.into(), kind, data, op_id: Some(op_id.into()) }
}

async fn push<S, B>(app: &S, request: &PushRequest) -> PushAnswer
where
    S: actix_web::dev::Service<actix_http::Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let resp = test::call_service(app, post("/api/sync/push", serde_json::to_value(request).unwrap()).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    test::read_body_json(resp).await
}

async fn pull<S, B>(app: &S, cursor: &SyncCursor) -> PullResponse
where
    S: actix_web::dev::Service<actix_http::Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let resp = test::call_service(app, get(&format!("/api/sync/pull?since={}", cursor.last_seq)).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    test::read_body_json(resp).await
}

#[actix_web::test]
async fn a_pylon_client_pushes_and_pulls_with_its_own_types() {
    let app = app().await;
    let first = PushRequest {
        client_id: Some("pylon-device-1".into()),
        changes: vec![
            change(ChangeKind::Insert, "r1", Some(json!({"title": "from pylon", "done": false})), "op-1"),
            change(ChangeKind::Insert, "r2", Some(json!({"done": "not a bool"})), "op-2"),
        ],
    };
    let answer = push(&app, &first).await;
    assert_eq!((answer.applied, answer.deduped), (1, 0));
    assert_eq!(answer.errors.len(), 1, "{:?}", answer.errors);
    assert!(answer.errors[0].starts_with("op-2: VALIDATION"), "{:?}", answer.errors);
    assert!(answer.cursor.last_seq >= 1);

    let again = push(&app, &first).await;
    assert_eq!((again.applied, again.deduped, again.errors.len()), (0, 1, 1), "a retried op_id is applied once");
    assert_eq!(again.cursor, answer.cursor, "nothing new was written");

    let pulled = pull(&app, &SyncCursor::beginning()).await;
    assert_eq!(pulled.changes.len(), 1);
    let event = &pulled.changes[0];
    assert_eq!((event.entity.as_str(), event.row_id.as_str(), &event.kind), ("Todo", "r1", &ChangeKind::Insert));
    assert_eq!(event.data.as_ref().unwrap()["title"], "from pylon");
    assert!(!event.timestamp.is_empty());
    assert_eq!(pulled.cursor, answer.cursor, "the push cursor is where the pull ends");
    assert!(!pulled.has_more);

    let more = PushRequest {
        client_id: None,
        changes: vec![
            change(ChangeKind::Update, "r1", Some(json!({"done": true})), "op-3"),
            change(ChangeKind::Delete, "r1", None, "op-4"),
        ],
    };
    let answer = push(&app, &more).await;
    assert_eq!((answer.applied, answer.deduped, answer.errors.len()), (2, 0, 0));
    let pulled = pull(&app, &pulled.cursor).await;
    let kinds: Vec<_> = pulled.changes.iter().map(|c| c.kind.clone()).collect();
    assert_eq!(kinds, [ChangeKind::Update, ChangeKind::Delete]);
    assert_eq!(pulled.changes[0].data.as_ref().unwrap()["done"], 1, "Plaza returns bools as 0/1");
    assert_eq!(pulled.cursor, answer.cursor);
}

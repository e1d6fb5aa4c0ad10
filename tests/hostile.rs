//! Hostile input, as an attacker would send it: each request gets a clear 4xx with the
//! `{"error":{"code","message"}}` body (or an error frame on a socket), never a 5xx, and the
//! server is healthy afterwards (`/health` 200 and an ordinary request works).

mod common;

use std::time::Duration;

use actix_codec::Framed;
use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use actix_web::App;
use awc::ws::{CloseCode, Codec, Frame, Message};
use awc::BoxedSocket;
use common::*;
use futures_util::{SinkExt, StreamExt};
use plaza::config::Config;
use serde_json::{json, Value};

/// The error body every refusal must carry.
fn assert_error(status: StatusCode, body: &Value, want_status: StatusCode, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(error_code(body), want_code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "a message for people: {body}");
}

/// The server still answers: liveness and an ordinary insert + read.
async fn assert_healthy<S, B>(app: &S)
where
    S: actix_web::dev::Service<actix_http::Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    assert_eq!(call(app, get("/health")).await.0, StatusCode::OK);
    let (status, row) = call(app, post("/api/entities/Todo", json!({"title": "still fine", "done": false}))).await;
    assert_eq!(status, StatusCode::CREATED, "{row}");
    let (status, got) = call(app, admin(get(&format!("/api/entities/Todo/{}", row["id"].as_str().unwrap())))).await;
    assert_eq!((status, got["title"].as_str()), (StatusCode::OK, Some("still fine")));
}

fn raw_post(path: &str, body: impl Into<Vec<u8>>) -> TestRequest {
    admin(TestRequest::post().uri(path).insert_header(("Content-Type", "application/json")).set_payload(body.into()))
}

#[actix_web::test]
async fn deeply_nested_json_is_refused() {
    let app = app().await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    for path in ["/api/query/Todo", "/api/entities/Todo", "/api/batch", "/api/sync/push"] {
        let (status, body) = call(&app, raw_post(path, deep.clone())).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_JSON");
    }
    let nested_not = format!("{}{}", r#"{"$not":"#.repeat(10_000), "}".repeat(10_000));
    let (status, body) = call(&app, raw_post("/api/query/Todo", nested_not)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "INVALID_JSON");
    assert_healthy(&app).await;
}

#[actix_web::test]
async fn huge_filters_are_refused() {
    let app = app().await;
    let values: Vec<Value> = (0..100_000).map(|i| json!(format!("v{i}"))).collect();
    let (status, body) = call(&app, post("/api/query/Todo", json!({"title": {"$in": values}}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");

    let many_keys: serde_json::Map<String, Value> = (0..50_000).map(|i| (format!("f{i}"), json!(i))).collect();
    let (status, body) = call(&app, post("/api/query/Todo", Value::Object(many_keys))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");

    // Within the per-operator limits, but far past what SQLite takes in one statement.
    let terms: Vec<Value> = (0..50_000).map(|i| json!({"title": format!("t{i}")})).collect();
    for op in ["$or", "$and"] {
        let (status, body) = call(&app, post("/api/query/Todo", json!({ op: terms }))).await;
        assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    }
    let wide_in: Vec<Value> = (0..40).map(|_| json!({"title": {"$in": (0..1000).map(|i| format!("v{i}")).collect::<Vec<_>>()}})).collect();
    let (status, body) = call(&app, post("/api/query/Todo", json!({"$or": wide_in}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    let over = urlencode(&json!({"$or": terms[..plaza_actors::model::query::MAX_FILTER_TERMS + 1]}).to_string());
    let (status, body) = call(&app, get(&format!("/api/entities/Todo?filter={over}"))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    let at_limit: Vec<Value> = (0..plaza_actors::model::query::MAX_FILTER_TERMS).map(|i| json!({"title": format!("t{i}")})).collect();
    let (status, body) = call(&app, post("/api/query/Todo", json!({"$or": at_limit}))).await;
    assert_eq!(status, StatusCode::OK, "the largest filter allowed still runs: {body}");
    assert_healthy(&app).await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[actix_web::test]
async fn bodies_that_are_not_utf8_or_too_big_are_refused() {
    let app = app_with(Config { max_body_bytes: 64 * 1024, ..config() }).await;
    let invalid = vec![b'{', b'"', b't', b'i', b't', b'l', b'e', b'"', b':', b'"', 0xff, 0xfe, 0xc3, b'"', b'}'];
    for path in ["/api/entities/Todo", "/api/query/Todo", "/api/import", "/api/sync/push"] {
        let (status, body) = call(&app, raw_post(path, invalid.clone())).await;
        assert!(status == StatusCode::BAD_REQUEST, "{path}: {status} {body}");
        assert!(matches!(error_code(&body), "INVALID_JSON" | "VALIDATION" | "BAD_REQUEST"), "{path}: {body}");
    }
    let big = format!(r#"{{"title":"{}","done":false}}"#, "x".repeat(200 * 1024));
    let (status, body) = call(&app, raw_post("/api/entities/Todo", big.clone())).await;
    assert_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert_healthy(&app).await;
}

#[actix_web::test]
async fn sql_looking_names_are_just_unknown_names() {
    let app = app().await;
    for entity in ["Todo%3BDROP%20TABLE%20Todo", "Todo%22%20--", "sqlite_master", "_plaza_sessions"] {
        let (status, body) = call(&app, admin(get(&format!("/api/entities/{entity}")))).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "UNKNOWN_ENTITY");
        let (status, body) = call(&app, post(&format!("/api/entities/{entity}"), json!({"title": "x"}))).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "UNKNOWN_ENTITY");
    }
    let evil = r#"title" = 1; DROP TABLE "Todo"; --"#;
    let (status, body) = call(&app, post("/api/entities/Todo", json!({evil: "x", "title": "t", "done": false}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    let (status, body) = call(&app, post("/api/query/Todo", json!({evil: "x"}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    let (status, body) = call(&app, post("/api/query/Todo", json!({"$order": {evil: "asc"}}))).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    let (status, body) = call(&app, get("/api/entities/Todo?order=title%3BDROP%20TABLE%20Todo")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    let (status, body) = call(&app, get("/api/entities/Todo?title%22%3D1--=x")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    let (status, body) = call(&app, post("/api/query/Todo", json!({"title": {"$like": "%' OR 1=1 --"}}))).await;
    assert_eq!((status, body.as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "a pattern is a value, not SQL");
    assert_healthy(&app).await;
}

#[actix_web::test]
async fn bad_order_parameters_are_400() {
    let app = app().await;
    let (status, body) = call(&app, get("/api/entities/Todo?order=title:sideways")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    let (status, body) = call(&app, get("/api/entities/Todo/cursor?order=title")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    let (status, body) = call(&app, get("/api/entities/Todo?limit=99999999999999999999999")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "VALIDATION");
    assert_healthy(&app).await;
}

#[actix_web::test]
async fn a_storage_failure_says_what_failed_without_sqlite_text() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plaza.db");
    let app = app_with(Config { in_memory: false, db: db.clone(), ..config() }).await;
    let (status, _) = call(&app, post("/api/entities/Todo", json!({"title": "before", "done": false}))).await;
    assert_eq!(status, StatusCode::CREATED);
    // Someone (a bad migration, an operator) breaks the table under the running server.
    rusqlite::Connection::open(&db).unwrap().execute_batch(r#"ALTER TABLE "Todo" RENAME TO "Gone""#).unwrap();
    let (status, body) = call(&app, post("/api/entities/Todo", json!({"title": "after", "done": false}))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(body, json!({"error": {"code": "INTERNAL", "message": "the database could not complete the write"}}));
    let (status, body) = call(&app, admin(get("/api/entities/Todo"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let text = body.to_string();
    assert!(!text.contains("no such table") && !text.contains("Todo\"") && !text.contains("SQL"), "{text}");
    assert!(body["error"]["message"].as_str().unwrap().starts_with("the database could not complete"), "{text}");
    // A unique violation is the client's business: it names the field, not SQLite's wording.
    let (status, _) = call(&app, post("/api/entities/User", json!({"email": "a@x", "displayName": "A"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = call(&app, post("/api/entities/User", json!({"email": "a@x", "displayName": "B"}))).await;
    assert_error(status, &body, StatusCode::CONFLICT, "CONFLICT");
    assert!(!body.to_string().contains("constraint failed"), "{body}");
    assert!(body.to_string().contains("email"), "{body}");
}

// ---------------------------------------------------------------- sockets

type Ws = Framed<BoxedSocket, Codec>;

/// A safety net against a hung test, not a synchronisation: every wait is for a frame.
const PATIENCE: Duration = Duration::from_secs(20);

fn server(config: Config) -> actix_test::TestServer {
    let state = plaza::build_state_with(config, todo_manifest()).unwrap();
    actix_test::start(move || App::new().configure(plaza::configure(state.clone())))
}

async fn connect(srv: &actix_test::TestServer) -> Ws {
    let client = awc::Client::builder().timeout(PATIENCE).finish();
    let (_, ws) = client.ws(srv.url(&format!("/ws?token={ADMIN}"))).max_frame_size(4 << 20).connect().await.unwrap();
    ws
}

enum Got {
    Json(Value),
    Closed(Option<CloseCode>),
}

async fn next(ws: &mut Ws) -> Got {
    loop {
        match actix_web::rt::time::timeout(PATIENCE, ws.next()).await.expect("a frame within the patience window") {
            Some(Ok(Frame::Text(t))) => return Got::Json(serde_json::from_slice(&t).unwrap()),
            Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.unwrap(),
            Some(Ok(Frame::Close(reason))) => return Got::Closed(reason.map(|r| r.code)),
            None | Some(Err(_)) => return Got::Closed(None),
            Some(Ok(_)) => {}
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Got::Json(v) => v,
        Got::Closed(code) => panic!("socket closed ({code:?}) where a frame was expected"),
    }
}

async fn assert_server_healthy(srv: &actix_test::TestServer) {
    let client = awc::Client::builder().timeout(PATIENCE).finish();
    assert_eq!(client.get(srv.url("/health")).send().await.unwrap().status(), StatusCode::OK);
    let mut ws = connect(srv).await;
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}), "a new socket works normally");
}

#[actix_web::test]
async fn a_chunked_body_over_the_limit_is_413_while_streaming() {
    let srv = server(Config { max_body_bytes: 64 * 1024, ..config() });
    let big = format!(r#"{{"title":"{}","done":false}}"#, "x".repeat(1 << 20)).into_bytes();
    let chunks: Vec<Result<actix_web::web::Bytes, std::io::Error>> =
        big.chunks(8192).map(|c| Ok(actix_web::web::Bytes::copy_from_slice(c))).collect();
    let client = awc::Client::builder().timeout(PATIENCE).finish();
    let mut resp = client
        .post(srv.url("/api/entities/Todo"))
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .send_stream(futures_util::stream::iter(chunks))
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&resp.body().await.unwrap()).unwrap();
    assert_error(resp.status(), &body, StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert_server_healthy(&srv).await;
}

#[actix_web::test]
async fn a_one_megabyte_frame_closes_the_socket_with_frame_too_large() {
    let srv = server(config());
    let mut ws = connect(&srv).await;
    let big = json!({"type": "subscribe", "id": "x".repeat(1 << 20), "entity": "Todo"}).to_string();
    ws.send(Message::Text(big.into())).await.unwrap();
    let frame = next_json(&mut ws).await;
    assert_eq!((frame["type"].as_str(), frame["code"].as_str()), (Some("error"), Some("FRAME_TOO_LARGE")), "{frame}");
    assert!(matches!(next(&mut ws).await, Got::Closed(Some(CloseCode::Size))), "closed with 1009");
    assert_server_healthy(&srv).await;
}

#[actix_web::test]
async fn subscriptions_past_the_limit_are_refused_on_10001_frames() {
    let srv = server(config());
    let limit = plaza::config::DEFAULT_WS_MAX_SUBSCRIPTIONS;
    let mut ws = connect(&srv).await;
    let (mut subscribed, mut refused) = (0, 0);
    // Sent in windows, so the replies never outgrow the socket's outbound queue.
    for window in (0..10_001).collect::<Vec<_>>().chunks(500) {
        for i in window {
            ws.feed(Message::Text(json!({"type": "subscribe", "id": format!("s{i}"), "entity": "Todo"}).to_string().into())).await.unwrap();
        }
        ws.flush().await.unwrap();
        for _ in window {
            let frame = next_json(&mut ws).await;
            match frame["type"].as_str() {
                Some("subscribed") => subscribed += 1,
                Some("error") => {
                    assert_eq!(frame["code"], "VALIDATION", "{frame}");
                    assert!(frame["message"].as_str().unwrap().contains(&limit.to_string()), "{frame}");
                    refused += 1;
                }
                _ => panic!("unexpected {frame}"),
            }
        }
    }
    assert_eq!((subscribed, refused), (limit, 10_001 - limit));
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}), "the socket itself stays usable");
    assert_server_healthy(&srv).await;
}

#[actix_web::test]
async fn frames_that_are_not_json_get_error_frames() {
    let srv = server(config());
    let mut ws = connect(&srv).await;
    for (frame, code) in [
        (Message::Text("not json at all".into()), "INVALID_JSON"),
        (Message::Text("{\"type\":".into()), "INVALID_JSON"),
        (Message::Text("[1,2,3]".into()), "BAD_FRAME"),
        (Message::Text(json!({"type": "subscribe\"; DROP TABLE Todo"}).to_string().into()), "BAD_FRAME"),
        (Message::Text(json!({"type": "subscribe", "id": "a", "entity": "Todo;DROP TABLE Todo"}).to_string().into()), "UNKNOWN_ENTITY"),
        (Message::Text(json!({"type": "subscribe", "id": "b", "entity": "Todo", "filter": {"nope\"--": 1}}).to_string().into()), "VALIDATION"),
        (Message::Binary(vec![0xff, 0x00, 0xfe].into()), "BAD_FRAME"),
    ] {
        ws.send(frame).await.unwrap();
        let got = next_json(&mut ws).await;
        assert_eq!((got["type"].as_str(), got["code"].as_str()), (Some("error"), Some(code)), "{got}");
        assert!(got["message"].as_str().is_some_and(|m| !m.is_empty()), "{got}");
    }
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    ws.send(Message::Text(nested.into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "INVALID_JSON");
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"type": "pong"}), "the socket stays open after bad frames");
    assert_server_healthy(&srv).await;
}

/// Arbitrary frames, shaped like the protocol's or not at all.
fn frame_strategy() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,10}".prop_map(Value::from),
    ];
    let json = scalar.prop_recursive(4, 32, 5, |inner| {
        let key = prop_oneof![
            proptest::sample::select(vec!["title", "done", "$or", "$in", "$not", "$like", "$gt", "nope", "$order"]).prop_map(String::from),
            ".{0,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    });
    let kind = proptest::sample::select(vec!["subscribe", "unsubscribe", "ping", "join", "shard_input", "SUBSCRIBE", "", "x"]);
    let entity = proptest::sample::select(vec!["Todo", "User", "todo", "Todo;--", ""]);
    let shaped = (kind, json.clone(), entity, json.clone(), json.clone()).prop_map(|(kind, id, entity, filter, since)| {
        json!({"type": kind, "id": id, "entity": entity, "filter": filter, "since": since}).to_string()
    });
    prop_oneof![3 => shaped, 1 => json.prop_map(|v| v.to_string()), 1 => ".{0,40}"]
}

#[actix_web::test]
async fn random_frames_get_answers_and_never_break_the_socket() {
    use proptest::strategy::{Strategy, ValueTree};
    let srv = server(config());
    let mut ws = connect(&srv).await;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strategy = frame_strategy();
    let client_errors = ["INVALID_JSON", "BAD_FRAME", "VALIDATION", "UNKNOWN_ENTITY", "CONFLICT", "NOT_FOUND", "NOT_IMPLEMENTED", "RESYNC_REQUIRED"];
    for _ in 0..400 {
        let text = strategy.new_tree(&mut runner).unwrap().current();
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        // A ping after each frame: whatever the frame caused arrives as frames before its pong
        // (or, for a subscribe still opening, just after; that is accepted on the next round).
        ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
        loop {
            let frame = match next(&mut ws).await {
                Got::Json(v) => v,
                Got::Closed(code) => panic!("socket closed ({code:?}) after {text}"),
            };
            match frame["type"].as_str() {
                Some("pong") => break,
                Some("subscribed" | "unsubscribed") => {}
                Some("error") => {
                    let code = frame["code"].as_str().unwrap_or_default();
                    assert!(client_errors.contains(&code), "{frame} after {text}");
                    assert!(frame["message"].as_str().is_some_and(|m| !m.is_empty()), "{frame}");
                }
                _ => panic!("unexpected {frame} after {text}"),
            }
        }
    }
    assert_server_healthy(&srv).await;
}

//! Pub/sub over real sockets: a publish reaches the subscribed sockets and no other, topic rules
//! decide who may subscribe and publish, unsubscribing and closing a socket stop delivery.

mod common;

use std::time::{Duration, Instant};

use actix_codec::Framed;
use actix_web::{web, App};
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use common::{config, ADMIN};
use futures_util::{SinkExt, StreamExt};
use plaza::AppState;
use plaza_actors::pubsub::Stats;
use plaza_actors::AppManifest;
use serde_json::{json, Value};

type Ws = Framed<BoxedSocket, Codec>;

/// Each user publishes and subscribes only to their own `user:<id>` topic; `news` follows the
/// defaults (sessions subscribe, the admin publishes).
const MANIFEST: &str = r#"{
  "topics": [{"pattern": "user:*", "subscribe": "auth.userId == topic.match", "publish": "auth.userId == topic.match"}]
}"#;

/// A safety net against a hung test, not a synchronisation: every wait below is for a frame.
const PATIENCE: Duration = Duration::from_secs(20);

fn server() -> (actix_test::TestServer, web::Data<AppState>) {
    let state = plaza::build_state_with(config(), AppManifest::from_json(MANIFEST).unwrap()).unwrap();
    let app_state = state.clone();
    (actix_test::start(move || App::new().configure(plaza::configure(app_state.clone()))), state)
}

fn client() -> awc::Client {
    awc::Client::builder().timeout(PATIENCE).finish()
}

async fn http(srv: &actix_test::TestServer, token: &str, path: &str, body: Value) -> (u16, Value) {
    let mut resp = client().post(srv.url(path)).insert_header(("Authorization", format!("Bearer {token}"))).send_json(&body).await.unwrap();
    let bytes = resp.body().await.unwrap();
    (resp.status().as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn session(srv: &actix_test::TestServer, user: &str) -> String {
    let (_, body) = http(srv, ADMIN, "/api/auth/session", json!({"user_id": user})).await;
    body["token"].as_str().unwrap().to_string()
}

async fn connect(srv: &actix_test::TestServer, token: &str) -> Ws {
    client().ws(srv.url(&format!("/ws?token={token}"))).connect().await.unwrap().1
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into())).await.unwrap();
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        match actix_web::rt::time::timeout(PATIENCE, ws.next()).await.expect("a frame in time") {
            Some(Ok(Frame::Text(t))) => return serde_json::from_slice(&t).unwrap(),
            Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

async fn sub(ws: &mut Ws, topic: &str) -> Value {
    send(ws, json!({"type": "pubsub_subscribe", "topic": topic})).await;
    next(ws).await
}

/// Nothing was queued for this socket: a ping sent now is answered first.
async fn nothing_pending(ws: &mut Ws) {
    send(ws, json!({"type": "ping"})).await;
    assert_eq!(next(ws).await, json!({"type": "pong"}));
}

async fn publish(srv: &actix_test::TestServer, token: &str, topic: &str, message: Value) -> (u16, Value) {
    http(srv, token, "/api/pubsub/publish", json!({"topic": topic, "message": message})).await
}

#[actix_web::test]
async fn publishes_reach_subscribed_sockets_only() {
    let (srv, state) = server();
    let (alice, bob, carol) = (session(&srv, "alice").await, session(&srv, "bob").await, session(&srv, "carol").await);
    let (mut a, mut b, mut c) = (connect(&srv, &alice).await, connect(&srv, &bob).await, connect(&srv, &carol).await);
    assert_eq!(sub(&mut a, "news").await, json!({"type": "pubsub_subscribed", "topic": "news"}));
    assert_eq!(sub(&mut b, "news").await, json!({"type": "pubsub_subscribed", "topic": "news"}));

    let (status, body) = publish(&srv, ADMIN, "news", json!({"headline": "hi"})).await;
    assert_eq!((status, body), (200, json!({"delivered": 2})));
    let frame = json!({"type": "pubsub", "topic": "news", "message": {"headline": "hi"}});
    assert_eq!(next(&mut a).await, frame);
    assert_eq!(next(&mut b).await, frame);
    nothing_pending(&mut c).await;

    // Unsubscribed: bob no longer receives.
    send(&mut b, json!({"type": "pubsub_unsubscribe", "topic": "news"})).await;
    assert_eq!(next(&mut b).await, json!({"type": "pubsub_unsubscribed", "topic": "news"}));
    assert_eq!(publish(&srv, ADMIN, "news", json!(2)).await.1, json!({"delivered": 1}));
    assert_eq!(next(&mut a).await["message"], 2);
    nothing_pending(&mut b).await;

    // A closed socket leaves its topics.
    a.close().await.unwrap();
    drop(a);
    let deadline = Instant::now() + PATIENCE;
    while state.plaza.pubsub.send(Stats).await.unwrap().subscriptions > 0 {
        assert!(Instant::now() < deadline, "closing the socket did not unsubscribe it");
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(publish(&srv, ADMIN, "news", json!(3)).await.1, json!({"delivered": 0}));
}

#[actix_web::test]
async fn topic_rules_decide_who_subscribes_and_publishes() {
    let (srv, _state) = server();
    let (alice, bob) = (session(&srv, "alice").await, session(&srv, "bob").await);
    let (mut a, mut b) = (connect(&srv, &alice).await, connect(&srv, &bob).await);

    // Only alice may subscribe to user:alice.
    assert_eq!(sub(&mut a, "user:alice").await["type"], "pubsub_subscribed");
    let refused = sub(&mut b, "user:alice").await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str(), refused["ref"].as_str()), (Some("error"), Some("FORBIDDEN"), Some("user:alice")));

    // Only alice (and the admin) may publish there; sessions may not publish to `news`.
    assert_eq!(publish(&srv, &bob, "user:alice", json!("x")).await.0, 403);
    let (status, body) = publish(&srv, &alice, "news", json!("x")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("FORBIDDEN")));
    assert_eq!(publish(&srv, &alice, "user:alice", json!("note to self")).await.1, json!({"delivered": 1}));
    assert_eq!(next(&mut a).await, json!({"type": "pubsub", "topic": "user:alice", "message": "note to self"}));
    nothing_pending(&mut b).await;

    // Anonymous sockets cannot subscribe by default; bad input is a validation error.
    let (_, mut anon) = client().ws(srv.url("/ws")).connect().await.unwrap();
    assert_eq!(sub(&mut anon, "news").await["code"], "FORBIDDEN");
    send(&mut a, json!({"type": "pubsub_subscribe"})).await;
    assert_eq!(next(&mut a).await["code"], "VALIDATION");
    assert_eq!(publish(&srv, ADMIN, "", json!(1)).await.0, 400);
}

//! Live updates over real sockets (actix_test server + awc clients): subscriptions, policies
//! per subscriber, resume with `since`, slow consumers, heartbeats, limits, SSE and sync push.

mod common;


use actix_web::App;
use awc::ws::{Frame, Message};
use common::live::{client, connect, http, next, send, Ws, PATIENCE};
use common::{config, ADMIN, ORIGIN};
use futures_util::{SinkExt, StreamExt};
use plaza::config::Config;
use plaza_actors::AppManifest;
use serde_json::{json, Value};


/// Owner-only Todo (as in the policy matrix) plus an open Note.
const MANIFEST: &str = r#"{
  "entities": [{"name": "Todo", "fields": [
      {"name": "title", "type": "string"}, {"name": "ownerId", "type": "string"}, {"name": "n", "type": "int", "optional": true}]},
    {"name": "Note", "fields": [{"name": "body", "type": "string"}]}],
  "policies": [{"entity": "Todo", "read": "auth.userId == data.ownerId", "write": "auth.userId == data.ownerId"}]
}"#;


fn server(config: Config) -> actix_test::TestServer {
    let state = plaza::build_state_with(config, AppManifest::from_json(MANIFEST).unwrap()).unwrap();
    actix_test::start(move || App::new().configure(plaza::configure(state.clone())))
}


async fn session(srv: &actix_test::TestServer, user: &str) -> String {
    let (_, body) = http(srv, ADMIN, "POST", "/api/auth/session", Some(json!({"user_id": user}))).await;
    body["token"].as_str().unwrap().to_string()
}

async fn insert(srv: &actix_test::TestServer, token: &str, owner: &str, title: &str) -> String {
    let (status, body) = http(srv, token, "POST", "/api/entities/Todo", Some(json!({"title": title, "ownerId": owner}))).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}




async fn subscribe(ws: &mut Ws, id: &str, entity: &str, extra: Value) -> Value {
    let mut frame = json!({"type": "subscribe", "id": id, "entity": entity});
    frame.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    send(ws, frame).await;
    next(ws).await.unwrap()
}

#[actix_web::test]
async fn subscribers_receive_committed_changes_they_may_read() {
    let srv = server(config());
    let (alice, bob) = (session(&srv, "alice").await, session(&srv, "bob").await);
    let mut a = connect(&srv, &alice).await;
    let mut b = connect(&srv, &bob).await;
    let subscribed = subscribe(&mut a, "mine", "Todo", json!({})).await;
    assert_eq!((subscribed["type"].as_str(), subscribed["id"].as_str()), (Some("subscribed"), Some("mine")));
    assert!(subscribed["seq"].is_i64());
    assert_eq!(subscribe(&mut b, "mine", "Todo", json!({})).await["type"], "subscribed");

    let id = insert(&srv, &alice, "alice", "secret plan").await;
    let frame = next(&mut a).await.unwrap();
    assert_eq!((frame["type"].as_str(), frame["sub"].as_str()), (Some("change"), Some("mine")));
    let event = &frame["event"];
    assert_eq!((event["entity"].as_str(), event["row_id"].as_str(), event["kind"].as_str()), (Some("Todo"), Some(id.as_str()), Some("insert")));
    assert_eq!(event["data"]["title"], "secret plan");
    assert!(event["seq"].is_i64() && event["timestamp"].is_string());

    // Bob's next frame is his own row: alice's was never sent to him.
    let bobs = insert(&srv, &bob, "bob", "bob's").await;
    let frame = next(&mut b).await.unwrap();
    assert_eq!(frame["event"]["row_id"], bobs.as_str(), "bob must not see alice's row");

    // Filters use the query language; ping/pong and unsubscribe work.
    assert_eq!(subscribe(&mut a, "big", "Todo", json!({"filter": {"n": {"$gt": 10}}})).await["type"], "subscribed");
    http(&srv, &alice, "POST", "/api/entities/Todo", Some(json!({"title":"small","ownerId":"alice","n":1}))).await;
    http(&srv, &alice, "POST", "/api/entities/Todo", Some(json!({"title":"large","ownerId":"alice","n":50}))).await;
    let mut got = vec![];
    for _ in 0..3 {
        let f = next(&mut a).await.unwrap();
        got.push((f["sub"].as_str().unwrap().to_string(), f["event"]["data"]["title"].as_str().unwrap().to_string()));
    }
    got.sort();
    assert_eq!(got, [("big".into(), "large".into()), ("mine".into(), "large".into()), ("mine".into(), "small".into())]);
    send(&mut a, json!({"type": "ping"})).await;
    assert_eq!(next(&mut a).await.unwrap(), json!({"type": "pong"}));
    send(&mut a, json!({"type": "unsubscribe", "id": "big"})).await;
    assert_eq!(next(&mut a).await.unwrap()["type"], "unsubscribed");
}

#[actix_web::test]
async fn resume_with_since_replays_exactly_the_missed_changes() {
    let srv = server(config());
    let alice = session(&srv, "alice").await;
    let mut ws = connect(&srv, &alice).await;
    subscribe(&mut ws, "s", "Todo", json!({})).await;
    insert(&srv, &alice, "alice", "seen").await;
    let seen = next(&mut ws).await.unwrap()["event"]["seq"].as_i64().unwrap();
    drop(ws);

    let mut missed = vec![];
    for i in 0..3 {
        missed.push(insert(&srv, &alice, "alice", &format!("missed {i}")).await);
    }
    http(&srv, ADMIN, "POST", "/api/entities/Todo", Some(json!({"title":"not hers","ownerId":"zed"}))).await;
    let mut ws = connect(&srv, &alice).await;
    let subscribed = subscribe(&mut ws, "s", "Todo", json!({"since": seen})).await;
    assert_eq!(subscribed["seq"], seen);
    let live = tokio_insert_after(&srv, &alice);
    let mut ids = vec![];
    let mut seqs = vec![];
    for _ in 0..3 {
        let f = next(&mut ws).await.unwrap();
        ids.push(f["event"]["row_id"].as_str().unwrap().to_string());
        seqs.push(f["event"]["seq"].as_i64().unwrap());
    }
    assert_eq!(ids, missed, "missed changes, in order, without the unreadable one");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let live_id = live.await;
    let f = next(&mut ws).await.unwrap();
    assert_eq!(f["event"]["row_id"], live_id.as_str(), "then live changes, no duplicate");
}

/// Inserts one more row for alice; awaited by the caller after the replay was read.
async fn tokio_insert_after(srv: &actix_test::TestServer, token: &str) -> String {
    insert(srv, token, "alice", "live").await
}

#[actix_web::test]
async fn resume_from_a_pruned_cursor_is_refused() {
    let srv = server(Config { changelog_retain: 2, ..config() });
    let alice = session(&srv, "alice").await;
    for i in 0..5 {
        insert(&srv, &alice, "alice", &format!("t{i}")).await;
    }
    let mut ws = connect(&srv, &alice).await;
    let reply = subscribe(&mut ws, "s", "Todo", json!({"since": 1})).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str(), reply["ref"].as_str()), (Some("error"), Some("RESYNC_REQUIRED"), Some("s")));
    let reply = subscribe(&mut ws, "t", "Nope", json!({})).await;
    assert_eq!(reply["code"], "UNKNOWN_ENTITY");
    let reply = subscribe(&mut ws, "u", "Todo", json!({"filter": {"nope": 1}})).await;
    assert_eq!(reply["code"], "VALIDATION");
}

#[actix_web::test]
async fn a_slow_consumer_is_cut_off_and_a_fast_one_keeps_receiving() {
    const ROWS: usize = 160;
    let srv = server(Config { ws_outbound_max: 8, max_body_bytes: 1 << 20, ..config() });
    let mut slow = connect(&srv, ADMIN).await;
    let mut fast = connect(&srv, ADMIN).await;
    subscribe(&mut slow, "s", "Note", json!({})).await;
    subscribe(&mut fast, "s", "Note", json!({})).await;

    // 160 frames of 128 KiB (20 MiB) outgrow the kernel's socket buffers of the reader that
    // never reads, so its queue backs up; the fast reader drains everything.
    let reader = actix_web::rt::spawn(async move {
        for _ in 0..ROWS {
            assert_eq!(next(&mut fast).await.expect("fast reader stays connected")["type"], "change");
        }
        fast
    });
    let body = "x".repeat(128 * 1024);
    for _ in 0..ROWS {
        let (status, _) = http(&srv, ADMIN, "POST", "/api/entities/Note", Some(json!({"body": body}))).await;
        assert_eq!(status, 201);
    }
    let mut fast = reader.await.unwrap();
    let (_, _) = http(&srv, ADMIN, "POST", "/api/entities/Note", Some(json!({"body": "after"}))).await;
    assert_eq!(next(&mut fast).await.unwrap()["event"]["data"]["body"], "after", "the fast socket is unaffected");

    // The slow reader finally reads: what was queued, then SLOW_CONSUMER, then the close.
    let mut changes = 0;
    let error = loop {
        let frame = next(&mut slow).await.expect("an error frame before the close");
        if frame["type"] == "change" {
            changes += 1;
        } else {
            break frame;
        }
    };
    assert_eq!(error["code"], "SLOW_CONSUMER");
    assert!(changes < ROWS, "the slow socket was cut before the end ({changes} changes)");
    assert!(next(&mut slow).await.is_none(), "and closed");
    let (_, metrics) = http(&srv, ADMIN, "GET", "/metrics", None).await;
    assert!(metrics["ws"]["slow_consumers_dropped"].as_u64().unwrap() >= 1);
}

#[actix_web::test]
async fn a_silent_client_is_dropped_after_the_timeout() {
    let srv = server(Config { ws_heartbeat_ms: 50, ws_client_timeout_ms: 200, ..config() });
    let (_, mut ws) = client().ws(srv.url("/ws")).connect().await.unwrap();
    // Read without ever answering a ping: pings arrive, then the close.
    let mut pings = 0;
    let reason = loop {
        match actix_web::rt::time::timeout(PATIENCE, ws.next()).await.unwrap() {
            Some(Ok(Frame::Ping(_))) => pings += 1,
            Some(Ok(Frame::Close(reason))) => break reason,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pings >= 1);
    assert_eq!(reason.unwrap().description.as_deref(), Some("heartbeat timeout"));
    // The connection is gone from the server too (its actor stops right after the close).
    let mut open = u64::MAX;
    for _ in 0..200 {
        open = http(&srv, ADMIN, "GET", "/metrics", None).await.1["ws"]["open"].as_u64().unwrap();
        if open == 0 {
            break;
        }
    }
    assert_eq!(open, 0, "no socket left open on the server");
}

#[actix_web::test]
async fn limits_on_subscriptions_frames_and_connections() {
    let srv = server(Config { ws_max_subscriptions: 2, ws_max_frame_bytes: 1024, ws_max_per_ip: 3, ..config() });
    let mut ws = connect(&srv, ADMIN).await;
    assert_eq!(subscribe(&mut ws, "1", "Note", json!({})).await["type"], "subscribed");
    assert_eq!(subscribe(&mut ws, "2", "Note", json!({})).await["type"], "subscribed");
    let third = subscribe(&mut ws, "3", "Note", json!({})).await;
    assert_eq!((third["code"].as_str(), third["ref"].as_str()), (Some("VALIDATION"), Some("3")));
    send(&mut ws, json!({"type": "nonsense"})).await;
    assert_eq!(next(&mut ws).await.unwrap()["code"], "BAD_FRAME");
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap()["code"], "INVALID_JSON");

    let _second = connect(&srv, ADMIN).await;
    let _third = connect(&srv, ADMIN).await;
    let refused = client().ws(srv.url("/ws")).connect().await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => assert_eq!(status.as_u16(), 429),
        other => panic!("a fourth socket from one IP must be refused, got {:?}", other.map(|_| ())),
    }

    send(&mut ws, json!({"type": "ping", "pad": "y".repeat(4096)})).await;
    assert_eq!(next(&mut ws).await.unwrap()["code"], "FRAME_TOO_LARGE");
    assert!(next(&mut ws).await.is_none(), "closed after an oversized frame");
}

#[actix_web::test]
async fn bad_tokens_and_cookie_csrf_on_the_upgrade() {
    let srv = server(config());
    let bad = client().ws(srv.url("/ws?token=nope")).connect().await;
    assert!(matches!(bad, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 401));
    let alice = session(&srv, "alice").await;
    let cookie = actix_web::cookie::Cookie::new("plaza_session", alice.clone());
    let no_origin = client().ws(srv.url("/ws")).cookie(cookie.clone()).connect().await;
    assert!(matches!(no_origin, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s.as_u16() == 403));
    let with_origin = client().ws(srv.url("/ws")).cookie(cookie).origin(ORIGIN).connect().await;
    assert!(with_origin.is_ok());
}

/// SSE: the next `event:` block (skipping keep-alive comments), as (event, id, data).
async fn next_sse(body: &mut awc::ClientResponse<impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin>, buf: &mut String) -> (String, Option<i64>, Value) {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.starts_with(':') {
                continue;
            }
            let field = |name: &str| block.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.trim().to_string());
            let data = field("data:").map(|d| serde_json::from_str(&d).unwrap()).unwrap_or(Value::Null);
            return (field("event:").unwrap_or_default(), field("id:").and_then(|i| i.parse().ok()), data);
        }
        let chunk = actix_web::rt::time::timeout(PATIENCE, body.next()).await.unwrap().expect("stream open").unwrap();
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[actix_web::test]
async fn sse_streams_the_same_frames_with_policies_and_resume() {
    let srv = server(config());
    let (alice, bob) = (session(&srv, "alice").await, session(&srv, "bob").await);
    let open = |token: &str, extra: &str| {
        client()
            .get(srv.url(&format!("/api/events?entity=Todo{extra}")))
            .insert_header(("Authorization", format!("Bearer {token}")))
            .send()
    };
    let mut a = open(&alice, "").await.unwrap();
    assert_eq!(a.status().as_u16(), 200);
    assert_eq!(a.headers().get("content-type").unwrap(), "text/event-stream");
    let mut b = open(&bob, "").await.unwrap();
    let (mut abuf, mut bbuf) = (String::new(), String::new());
    assert_eq!(next_sse(&mut a, &mut abuf).await.0, "subscribed");
    assert_eq!(next_sse(&mut b, &mut bbuf).await.0, "subscribed");

    let id = insert(&srv, &alice, "alice", "hers").await;
    let (event, seq, data) = next_sse(&mut a, &mut abuf).await;
    assert_eq!((event.as_str(), data["type"].as_str(), data["event"]["row_id"].as_str()), ("change", Some("change"), Some(id.as_str())));
    let seq = seq.expect("id: carries the seq");
    assert_eq!(data["event"]["seq"], seq);
    let bobs = insert(&srv, &bob, "bob", "his").await;
    assert_eq!(next_sse(&mut b, &mut bbuf).await.2["event"]["row_id"], bobs.as_str(), "bob's stream skips alice's row");

    // Last-Event-ID resumes after the given seq.
    let missed = insert(&srv, &alice, "alice", "while away").await;
    let mut again = client()
        .get(srv.url("/api/events?entity=Todo"))
        .insert_header(("Authorization", format!("Bearer {alice}")))
        .insert_header(("Last-Event-ID", seq.to_string()))
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    assert_eq!(next_sse(&mut again, &mut buf).await.0, "subscribed");
    assert_eq!(next_sse(&mut again, &mut buf).await.2["event"]["row_id"], missed.as_str());

    let (status, body) = http(&srv, &alice, "GET", "/api/events?entity=Todo&since=999", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (410, Some("RESYNC_REQUIRED")));
    let (status, _) = http(&srv, &alice, "GET", "/api/events?entity=Nope", None).await;
    assert_eq!(status, 404);
    // EventSource cannot set headers: ?token= works too, and a bad one is refused.
    let by_query = client().get(srv.url(&format!("/api/events?entity=Todo&token={alice}"))).send().await.unwrap();
    assert_eq!(by_query.status().as_u16(), 200);
    let bad = client().get(srv.url("/api/events?entity=Todo&token=nope")).send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 401);
}

#[actix_web::test]
async fn push_applies_an_op_once_and_fans_out() {
    let srv = server(config());
    let alice = session(&srv, "alice").await;
    let mut ws = connect(&srv, &alice).await;
    subscribe(&mut ws, "s", "Todo", json!({})).await;
    let push = json!({"client_id": "phone", "changes": [
        {"entity": "Todo", "row_id": "r1", "kind": "insert", "data": {"title": "offline", "ownerId": "alice"}, "op_id": "op-1"},
        {"entity": "Todo", "row_id": "r2", "kind": "insert", "data": {"title": "theirs", "ownerId": "bob"}, "op_id": "op-2"},
        {"entity": "Todo", "row_id": "r1", "kind": "update", "data": {"title": "edited"}}
    ]});
    let (status, first) = http(&srv, &alice, "POST", "/api/sync/push", Some(push.clone())).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["applied"].clone(), first["duplicates"].clone()), (json!(2), json!(0)));
    assert_eq!(first["results"][1]["error"]["code"], "FORBIDDEN", "pushes go through the policies");
    assert_eq!(next(&mut ws).await.unwrap()["event"]["row_id"], "r1", "pushed changes fan out");

    let retry = json!({"changes": [push["changes"][0].clone()]});
    let (_, second) = http(&srv, &alice, "POST", "/api/sync/push", Some(retry)).await;
    assert_eq!((second["applied"].clone(), second["duplicates"].clone()), (json!(0), json!(1)));
    assert_eq!(second["results"][0]["duplicate"], true);
    assert_eq!(second["results"][0]["seq"], first["results"][0]["seq"], "the first result is returned");
    let (_, row) = http(&srv, &alice, "GET", "/api/entities/Todo/r1", None).await;
    assert_eq!(row["title"], "edited", "the retried insert did not run again");
    let (status, body) = http(&srv, &alice, "POST", "/api/sync/push", Some(json!({"nope": []}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("VALIDATION")));
}

/// The frames until the server closes, and the close code it gave.
async fn until_closed(ws: &mut Ws) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        match actix_web::rt::time::timeout(PATIENCE, ws.next()).await.expect("the server closes within the patience window") {
            Some(Ok(Frame::Text(t))) => frames.push(serde_json::from_slice(&t).unwrap()),
            Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.unwrap(),
            Some(Ok(Frame::Close(reason))) => return (frames, reason.map(|r| u16::from(r.code))),
            None | Some(Err(_)) => return (frames, None),
            Some(Ok(_)) => {}
        }
    }
}

/// SSE: the `event:` blocks until the server ends the body.
async fn sse_until_end(
    body: &mut awc::ClientResponse<impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin>,
) -> String {
    let mut text = String::new();
    while let Some(chunk) = actix_web::rt::time::timeout(PATIENCE, body.next()).await.expect("the server ends the stream") {
        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
    }
    text
}

async fn open_sse(srv: &actix_test::TestServer, token: &str) -> awc::ClientResponse<impl futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin> {
    let mut sse = client()
        .get(srv.url("/api/events?entity=Note"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    let mut buf = String::new();
    assert_eq!(next_sse(&mut sse, &mut buf).await.0, "subscribed");
    sse
}

#[actix_web::test]
async fn logout_closes_every_stream_of_that_session_and_no_other() {
    let srv = server(config());
    let (alice, other_alice, bob) = (session(&srv, "alice").await, session(&srv, "alice").await, session(&srv, "bob").await);
    let mut ws = connect(&srv, &alice).await;
    assert_eq!(subscribe(&mut ws, "n", "Note", json!({})).await["type"], "subscribed");
    let mut sse = open_sse(&srv, &alice).await;
    let mut same_user_other_session = connect(&srv, &other_alice).await;
    let mut bobs = connect(&srv, &bob).await;

    let (status, _) = http(&srv, &alice, "POST", "/api/auth/logout", None).await;
    assert_eq!(status, 200);
    let (frames, code) = until_closed(&mut ws).await;
    assert_eq!(frames.last().unwrap()["code"], "SESSION_REVOKED", "{frames:?}");
    assert_eq!(code, Some(4001));
    let text = sse_until_end(&mut sse).await;
    assert!(text.contains("event: error") && text.contains("SESSION_REVOKED"), "{text}");
    // Other sessions keep their sockets.
    for socket in [&mut same_user_other_session, &mut bobs] {
        send(socket, json!({"type": "ping"})).await;
        assert_eq!(next(socket).await.unwrap()["type"], "pong");
    }
}

#[actix_web::test]
async fn a_stream_is_closed_when_its_session_expires() {
    let srv = server(Config { session_ttl_secs: 1, ..config() });
    let token = session(&srv, "alice").await;
    let mut ws = connect(&srv, &token).await;
    let (frames, code) = until_closed(&mut ws).await;
    assert_eq!(frames.last().unwrap()["code"], "SESSION_REVOKED", "{frames:?}");
    assert_eq!(code, Some(4001));
}

#[actix_web::test]
async fn a_drain_tells_websockets_and_sse_streams_to_reconnect() {
    let state = plaza::build_state_with(config(), AppManifest::from_json(MANIFEST).unwrap()).unwrap();
    let app_state = state.clone();
    let srv = actix_test::start(move || App::new().configure(plaza::configure(app_state.clone())));
    let token = session(&srv, "alice").await;
    let mut ws = connect(&srv, &token).await;
    let mut sse = open_sse(&srv, &token).await;

    state.begin_drain();
    let (frames, code) = until_closed(&mut ws).await;
    assert_eq!(frames.last().unwrap()["code"], "SERVER_RESTARTING", "{frames:?}");
    assert_eq!(code, Some(1012));
    let text = sse_until_end(&mut sse).await;
    assert!(text.contains("SERVER_RESTARTING"), "{text}");
    let (status, body) = http(&srv, &token, "GET", "/ready", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("UNAVAILABLE")), "{body}");
    let refused = client().ws(srv.url(&format!("/ws?token={token}"))).connect().await;
    assert!(refused.is_err(), "no new sockets while draining");
}

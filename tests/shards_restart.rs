//! Process-level: the built `plaza` binary with a persisting manifest shard is stopped with
//! SIGTERM (the drain saves the shard's last snapshot through the Writer) and started again on
//! the same database: the shard resumes at its tick with its players where they were.

mod common;

use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use common::process::PlazaProcess;
use common::{plaza, remote, up};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

const ADMIN: &str = "shards-restart-admin";
const PATIENCE: Duration = Duration::from_secs(30);
const MANIFEST: &str = r#"{"shards": [{"name": "world", "sim": "arena", "tick_hz": 20, "persist": true}]}"#;

/// `plaza` on `dir/plaza.db` with the persisting shard's manifest, on a free port.
fn start(dir: &std::path::Path) -> PlazaProcess {
    up(plaza()
        .args(["--port", "0", "--admin-token", ADMIN])
        .arg("--db")
        .arg(dir.join("plaza.db"))
        .arg("--manifest")
        .arg(dir.join("plaza.json")))
}

async fn http(server: &PlazaProcess, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::builder().timeout(PATIENCE).finish();
    remote::send(&client, Some(token), method, &format!("{}{path}", server.base_url()), body.as_ref()).await
}

async fn next_snapshot(ws: &mut Framed<BoxedSocket, Codec>) -> Value {
    loop {
        match actix_web::rt::time::timeout(PATIENCE, ws.next()).await.expect("a frame in time") {
            Some(Ok(Frame::Text(t))) => {
                let frame: Value = serde_json::from_slice(&t).unwrap();
                assert_eq!(frame["type"], "snapshot", "{frame}");
                return frame;
            }
            Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.unwrap(),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

#[actix_web::test]
async fn a_persisting_shard_resumes_from_its_snapshot_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plaza.json"), MANIFEST).unwrap();
    let mut server = start(dir.path());
    let (_, session) = http(&server, ADMIN, "POST", "/api/auth/session", Some(json!({"user_id": "alice"}))).await;
    let alice = session["token"].as_str().unwrap().to_string();
    // Alice watches over a WebSocket, which makes her a player; it closes with the drain.
    let ws_url = format!("{}/ws?token={alice}", server.base_url().replace("http://", "ws://"));
    let (_, mut ws) = awc::Client::new().ws(ws_url).connect().await.unwrap();
    ws.send(Message::Text(json!({"type": "shard_subscribe", "shard": "world"}).to_string().into())).await.unwrap();

    // Alice walks right for a while, then stops.
    let (status, body) = http(&server, &alice, "POST", "/api/shards/world/input", Some(json!({"input": {"move": [1, 0]}}))).await;
    assert_eq!(status, 200, "{body}");
    let moving_from = body["tick"].as_u64().unwrap();
    while next_snapshot(&mut ws).await["tick"].as_u64().unwrap() < moving_from + 5 {}
    let (_, body) = http(&server, &alice, "POST", "/api/shards/world/input", Some(json!({"input": {"move": [0, 0]}}))).await;
    let stopped_at = body["tick"].as_u64().unwrap();
    let still = loop {
        let frame = next_snapshot(&mut ws).await;
        if frame["tick"].as_u64().unwrap() >= stopped_at {
            break frame;
        }
    };
    let alice_then = still["state"]["players"]["alice"].clone();
    assert_eq!((alice_then["vx"].as_f64(), alice_then["vy"].as_f64()), (Some(0.0), Some(0.0)), "{still}");
    assert!(alice_then["x"].as_f64().unwrap() > 50.0, "she moved right: {alice_then}");

    let status = server.terminate(PATIENCE).unwrap().expect("exits within the patience window after SIGTERM");
    assert!(status.success(), "SIGTERM exits 0: {status}");
    let server = start(dir.path());
    let (status, world) = http(&server, ADMIN, "GET", "/api/shards/world", None).await;
    assert_eq!(status, 200, "{world}");
    assert!(world["tick"].as_u64().unwrap() >= still["tick"].as_u64().unwrap(), "the tick resumes: {world}");
    let alice_now = &world["state"]["players"]["alice"];
    assert_eq!((&alice_now["x"], &alice_now["y"]), (&alice_then["x"], &alice_then["y"]), "alice is where she stopped");
    let (_, list) = http(&server, ADMIN, "GET", "/api/shards", None).await;
    assert_eq!((list["shards"][0]["players"].as_u64(), list["shards"][0]["persist"].as_bool()), (Some(1), Some(true)));
}

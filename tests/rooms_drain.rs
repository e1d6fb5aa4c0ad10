//! Process-level: the built `plaza` binary stopped with SIGTERM saves the state of every
//! persisting room before it exits, and the next process serves those rooms from it.

mod common;

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use awc::ws::{Frame, Message};
use common::process::{LogSink, PlazaProcess};
use common::{plaza, remote, up};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

const ADMIN: &str = "rooms-admin";
const MANIFEST: &str = r#"{"rooms": {"rules": [{"pattern": "game-*", "persist": true}]}}"#;
const PATIENCE: Duration = Duration::from_secs(30);

/// Starts `plaza` on `dir`; its log lines (after `listening on`) go to `log`.
fn start(dir: &Path, log: mpsc::Sender<String>) -> PlazaProcess {
    let manifest = dir.join("plaza.json");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let sink: LogSink = Arc::new(move |line: &[u8]| {
        let _ = log.send(String::from_utf8_lossy(line).into_owned());
    });
    up(plaza()
        .args(["--port", "0", "--admin-token", ADMIN])
        .arg("--db")
        .arg(dir.join("plaza.db"))
        .arg("--manifest")
        .arg(&manifest)
        .on_log(sink))
}

async fn next(ws: &mut actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>) -> Value {
    loop {
        match actix_web::rt::time::timeout(PATIENCE, ws.next()).await.expect("a frame in time") {
            Some(Ok(Frame::Text(t))) => return serde_json::from_slice(&t).unwrap(),
            Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[actix_web::test]
async fn sigterm_saves_persisting_rooms_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let client = awc::Client::default();
    let (log, lines) = mpsc::channel();
    let mut server = start(dir.path(), log.clone());
    let base = server.base_url();
    let (_, session) = remote::send(&client, Some(ADMIN), "POST", &format!("{base}/api/auth/session"), Some(&json!({"user_id": "alice"}))).await;
    let url = format!("{}/ws?token={}", base.replace("http://", "ws://"), session["token"].as_str().unwrap());
    let (_, mut ws) = client.ws(url).connect().await.unwrap();
    ws.send(Message::Text(json!({"type": "join", "room": "game-7"}).to_string().into())).await.unwrap();
    assert_eq!(next(&mut ws).await["type"], "joined");
    // Patched just before the stop: only the drain can have saved it (a running room saves
    // every 10 s).
    for patch in [json!({"round": 1, "board": [0, 0]}), json!({"round": 2})] {
        ws.send(Message::Text(json!({"type": "state_patch", "room": "game-7", "patch": patch}).to_string().into())).await.unwrap();
        assert_eq!(next(&mut ws).await["type"], "room_state");
    }

    server.signal_term().unwrap();
    let status = server.wait_exit(PATIENCE).unwrap().expect("plaza exits after draining");
    assert!(status.success(), "exit 0 after draining, got {status}");
    drop(server);
    let logged: Vec<String> = lines.try_iter().collect();
    assert!(logged.iter().any(|l| l.contains("saved the state of persisting rooms") && l.contains("rooms=1")), "{logged:?}");

    let server = start(dir.path(), log);
    let (status, room) = remote::send(&client, Some(ADMIN), "GET", &format!("{}/api/rooms/game-7", server.base_url()), None).await;
    assert_eq!((status, room["state"].clone(), room["state_version"].as_u64()), (200, json!({"round": 2, "board": [0, 0]}), Some(2)));
}

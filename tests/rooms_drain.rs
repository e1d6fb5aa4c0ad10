//! Process-level: the built `plaza` binary stopped with SIGTERM saves the state of every
//! persisting room before it exits, and the next process starts those rooms from it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

const ADMIN: &str = "rooms-admin";
const MANIFEST: &str = r#"{"rooms": {"rules": [{"pattern": "game-*", "persist": true}]}}"#;
const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `plaza` on port 0 and learns its address from the `listening on` log line.
fn start(dir: &std::path::Path) -> Server {
    let manifest = dir.join("plaza.json");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plaza"))
        .args(["--port", "0", "--admin-token", ADMIN])
        .arg("--db")
        .arg(dir.join("plaza.db"))
        .arg("--manifest")
        .arg(&manifest)
        .env("PLAZA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plaza");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("listening on ").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx.recv_timeout(PATIENCE).expect("plaza logs `listening on ADDR`");
    Server { child, base: format!("http://{addr}") }
}

async fn call(server: &Server, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let req = awc::Client::default()
        .request(method.parse().unwrap(), format!("{}{path}", server.base))
        .insert_header(("Authorization", format!("Bearer {token}")));
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .expect("request");
    let bytes = resp.body().await.expect("body");
    (resp.status().as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
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
    let mut server = start(dir.path());
    let (_, session) = call(&server, ADMIN, "POST", "/api/auth/session", Some(json!({"user_id": "alice"}))).await;
    let token = session["token"].as_str().unwrap().to_string();
    let url = format!("{}/ws?token={token}", server.base.replace("http://", "ws://"));
    let (_, mut ws) = awc::Client::default().ws(url).connect().await.unwrap();
    ws.send(Message::Text(json!({"type": "join", "room": "game-7"}).to_string().into())).await.unwrap();
    assert_eq!(next(&mut ws).await["type"], "joined");
    for patch in [json!({"round": 1, "board": [0, 0]}), json!({"round": 2})] {
        let frame = json!({"type": "state_patch", "room": "game-7", "patch": patch});
        ws.send(Message::Text(frame.to_string().into())).await.unwrap();
        assert_eq!(next(&mut ws).await["type"], "room_state");
    }

    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = server.child.wait().unwrap();
    assert!(status.success(), "exit 0 after draining, got {status}");
    drop(server);

    let server = start(dir.path());
    let (status, room) = call(&server, ADMIN, "GET", "/api/rooms/game-7", None).await;
    assert_eq!((status, room["state"].clone(), room["state_version"].as_u64()), (200, json!({"round": 2, "board": [0, 0]}), Some(2)));
}

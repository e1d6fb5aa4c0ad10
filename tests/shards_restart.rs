//! Process-level: the built `plaza` binary with a persisting manifest shard is stopped with
//! SIGTERM (the drain saves the shard's last snapshot through the Writer) and started again on
//! the same database: the shard resumes at its tick with its players where they were.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

const ADMIN: &str = "shards-restart-admin";
const PATIENCE: Duration = Duration::from_secs(30);
const MANIFEST: &str = r#"{"shards": [{"name": "world", "sim": "arena", "tick_hz": 20, "persist": true}]}"#;

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

/// Starts `plaza` on port 0 and waits for its `listening on` log line to learn the port.
fn start(dir: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plaza"))
        .args(["--port", "0", "--admin-token", ADMIN])
        .arg("--db")
        .arg(dir.join("plaza.db"))
        .arg("--manifest")
        .arg(dir.join("plaza.json"))
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

/// SIGTERM, then the exit status.
fn terminate(server: &mut Server) -> std::process::ExitStatus {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    server.child.wait().unwrap()
}

async fn http(server: &Server, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = awc::Client::builder().timeout(PATIENCE).finish();
    let req = client.request(method.parse().unwrap(), format!("{}{path}", server.base)).insert_header(("Authorization", format!("Bearer {token}")));
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .unwrap();
    let bytes = resp.body().await.unwrap();
    (resp.status().as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
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
    let ws_url = format!("{}/ws?token={ADMIN}", server.base.replace("http://", "ws://"));
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

    assert!(terminate(&mut server).success(), "SIGTERM exits 0");
    let server = start(dir.path());
    let (status, world) = http(&server, ADMIN, "GET", "/api/shards/world", None).await;
    assert_eq!(status, 200, "{world}");
    assert!(world["tick"].as_u64().unwrap() >= still["tick"].as_u64().unwrap(), "the tick resumes: {world}");
    let alice_now = &world["state"]["players"]["alice"];
    assert_eq!((&alice_now["x"], &alice_now["y"]), (&alice_then["x"], &alice_then["y"]), "alice is where she stopped");
    let (_, list) = http(&server, ADMIN, "GET", "/api/shards", None).await;
    assert_eq!((list["shards"][0]["players"].as_u64(), list["shards"][0]["persist"].as_bool()), (Some(1), Some(true)));
}

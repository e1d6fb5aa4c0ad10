//! Process-level: the built `plaza` binary on a real database file, killed with SIGKILL or
//! stopped with SIGTERM (also under a write load) and restarted. Every acknowledged row and
//! change-log seq survives; new seqs continue after them. Also how it starts: with no arguments
//! at all, and refusing an incompatible manifest.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{PlazaProcess, StartError};
use common::remote::{self, Progress};
use common::{serve, up};
use serde_json::{json, Value};

const ADMIN: &str = "restart-admin";

/// Starts `plaza` on `dir/plaza.db` with the todo manifest.
fn start(dir: &Path) -> PlazaProcess {
    up(serve(&dir.join("plaza.db"), ADMIN))
}

async fn send(client: &awc::Client, method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    remote::send(client, Some(ADMIN), method, &url, body.as_ref()).await
}

async fn send_as(client: &awc::Client, token: &str, method: &str, url: String, body: Option<Value>) -> (u16, Value) {
    remote::send(client, Some(token), method, &url, body.as_ref()).await
}

#[actix_web::test]
async fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let client = awc::Client::default();
    let server = start(dir.path());

    let mut ids = Vec::new();
    for i in 0..40 {
        let (status, body) =
            send(&client, "POST", format!("{}/api/entities/Todo", server.base_url()), Some(json!({"title": format!("t{i}"), "done": false}))).await;
        assert_eq!(status, 201);
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (status, _) = send(&client, "PATCH", format!("{}/api/entities/Todo/{}", server.base_url(), ids[0]), Some(json!({"done": true}))).await;
    assert_eq!(status, 200);
    let (_, before) = send(&client, "GET", format!("{}/api/sync/pull?since=0&limit=1000", server.base_url()), None).await;
    assert_eq!(before["changes"].as_array().unwrap().len(), 41);

    drop(server); // SIGKILL: no shutdown path runs.
    let server = start(dir.path());

    for id in &ids {
        let (status, row) = send(&client, "GET", format!("{}/api/entities/Todo/{id}", server.base_url()), None).await;
        assert_eq!(status, 200, "row {id} acknowledged before the kill");
        assert_eq!(row["done"], if *id == ids[0] { 1 } else { 0 });
    }
    let (_, after) = send(&client, "GET", format!("{}/api/sync/pull?since=0&limit=1000", server.base_url()), None).await;
    assert_eq!(after["changes"], before["changes"], "the change log is intact, seqs included");

    let (status, _) = send(&client, "POST", format!("{}/api/entities/Todo", server.base_url()), Some(json!({"title":"new","done":false}))).await;
    assert_eq!(status, 201);
    let (_, next) = send(&client, "GET", format!("{}/api/sync/pull?since=41", server.base_url()), None).await;
    assert_eq!(next["changes"][0]["seq"], 42, "new seqs continue after the old ones");
}

#[actix_web::test]
async fn sessions_survive_a_restart_and_revoked_ones_stay_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let client = awc::Client::default();
    let server = start(dir.path());
    let mut tokens = Vec::new();
    for user in ["kept", "revoked"] {
        let (status, s) = send(&client, "POST", format!("{}/api/auth/session", server.base_url()), Some(json!({"user_id": user}))).await;
        assert_eq!(status, 201);
        tokens.push(s["token"].as_str().unwrap().to_string());
    }
    let (status, _) = send_as(&client, &tokens[1], "POST", format!("{}/api/auth/logout", server.base_url()), None).await;
    assert_eq!(status, 200);

    drop(server);
    let server = start(dir.path());
    let (status, me) = send_as(&client, &tokens[0], "GET", format!("{}/api/auth/me", server.base_url()), None).await;
    assert_eq!((status, me["user_id"].as_str()), (200, Some("kept")));
    let (status, body) = send_as(&client, &tokens[1], "GET", format!("{}/api/auth/me", server.base_url()), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("UNAUTHORIZED")));
}

#[actix_web::test]
async fn a_pushed_op_is_not_applied_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let client = awc::Client::default();
    let push = json!({"changes": [{"entity": "Todo", "row_id": "p1", "kind": "insert",
                                   "data": {"title": "queued offline", "done": false}, "op_id": "op-77"}]});
    let server = start(dir.path());
    let (status, first) = send(&client, "POST", format!("{}/api/sync/push", server.base_url()), Some(push.clone())).await;
    assert_eq!((status, first["applied"].as_i64()), (200, Some(1)));
    drop(server);

    let server = start(dir.path());
    let (_, retry) = send(&client, "POST", format!("{}/api/sync/push", server.base_url()), Some(push)).await;
    assert_eq!((retry["applied"].as_i64(), retry["duplicates"].as_i64()), (Some(0), Some(1)));
    assert_eq!(retry["results"][0]["seq"], first["results"][0]["seq"]);
    let (_, pulled) = send(&client, "GET", format!("{}/api/sync/pull?since=0", server.base_url()), None).await;
    assert_eq!(pulled["changes"].as_array().unwrap().len(), 1, "applied exactly once");
}

#[actix_web::test]
async fn sigterm_tells_sockets_to_reconnect_and_exits_cleanly() {
    use awc::ws::{CloseCode, Frame, Message};
    use futures_util::{SinkExt, StreamExt};

    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    let url = format!("ws://{}/ws?token={ADMIN}", server.addr());
    let (_, mut ws) = awc::Client::default().ws(url).connect().await.unwrap();
    ws.send(Message::Text(json!({"type":"subscribe","id":"s","entity":"Todo"}).to_string().into())).await.unwrap();
    assert!(matches!(ws.next().await, Some(Ok(Frame::Text(_)))), "subscribed");

    server.signal_term().unwrap();
    let notice = match ws.next().await {
        Some(Ok(Frame::Text(t))) => serde_json::from_slice::<Value>(&t).unwrap(),
        other => panic!("expected a notice, got {other:?}"),
    };
    assert_eq!(notice["code"], "SERVER_RESTARTING");
    match ws.next().await {
        Some(Ok(Frame::Close(Some(reason)))) => assert_eq!(reason.code, CloseCode::Restart),
        other => panic!("expected close 1012, got {other:?}"),
    }
    let status = server.wait_exit(Duration::from_secs(30)).unwrap().expect("exits within the drain time");
    assert!(status.success(), "exit 0 after draining, got {status}");
}

/// Graceful stop under load: writes in flight when SIGTERM arrives finish, the process exits 0,
/// and every write that was answered 201 is there after a restart.
#[actix_web::test]
async fn sigterm_under_write_load_keeps_every_acknowledged_write_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = up(serve(&dir.path().join("plaza.db"), ADMIN).args(["--drain-secs", "5"]));
    let base = server.base_url();
    let client = awc::Client::default();
    let progress = Progress::default();
    // The loops end by themselves once the stopping server no longer answers 201.
    let load = remote::insert_load(&client, ADMIN, &base, "drain", 8, &progress);
    let term = async {
        progress.until_acked(300).await;
        server.signal_term().unwrap();
    };
    let (acked, ()) = futures_util::future::join(load, term).await;
    let status = server.wait_exit(Duration::from_secs(30)).unwrap().expect("exits within the drain time");
    assert!(status.success(), "exit 0 after draining, got {status}");

    let server = start(dir.path());
    for row in &acked {
        let (status, got) = send(&client, "GET", format!("{}/api/entities/Todo/{}", server.base_url(), row.id), None).await;
        assert_eq!((status, got["title"].as_str()), (200, Some(row.title.as_str())), "{} was acknowledged", row.id);
    }
    remote::assert_gap_free(&remote::pull_all(&client, ADMIN, &server.base_url()).await);
}

#[test]
fn check_reports_manifest_problems() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"entities":[{"name":"T","fields":[{"name":"a","type":"id(Nope)"}]}]}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_plaza")).arg("check").arg("--manifest").arg(&bad).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("id(Nope) refers to an unknown entity"));
    let out = Command::new(env!("CARGO_BIN_EXE_plaza")).args(["check", "--manifest", common::TODO_MANIFEST]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (2 entities"));
}

#[test]
fn incompatible_migration_refuses_to_start_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.json");
    let db = dir.path().join("db.sqlite");
    let run = |fields: &str| -> Result<PlazaProcess, StartError> {
        std::fs::write(&manifest, format!(r#"{{"entities":[{{"name":"Note","fields":[{fields}]}}]}}"#)).unwrap();
        common::plaza().args(["--port", "0"]).arg("--db").arg(&db).arg("--manifest").arg(&manifest).start()
    };
    // Each server is dropped (killed) before the next one opens the database.
    if let Err(e) = run(r#"{"name":"body","type":"string"}"#) {
        panic!("{e}");
    }
    if let Err(e) = run(r#"{"name":"body","type":"string"},{"name":"tag","type":"string","optional":true}"#) {
        panic!("a new optional field migrates: {e}");
    }
    match run(r#"{"name":"body","type":"int"},{"name":"tag","type":"string","optional":true}"#) {
        Err(StartError::Exited { status, output }) => {
            let log = output.join("\n");
            assert!(!status.unwrap().success() && log.contains("Note.body changed type from string to int"), "{log}");
        }
        Err(e) => panic!("expected a refusal to start, got {e}"),
        Ok(_) => panic!("an incompatible change must not start"),
    }
}

/// The README's promise: `plaza` with no flags in a directory without a manifest serves an
/// empty app (it used to exit 1: "manifest_version 0 is not supported").
#[actix_web::test]
async fn with_no_arguments_in_an_empty_directory_it_serves_an_empty_app() {
    let dir = tempfile::tempdir().unwrap();
    let mut launch = common::plaza().current_dir(dir.path());
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PLAZA_")) {
        launch = launch.env_remove(key);
    }
    // Not a flag: the default port (4321) may be taken on a test machine.
    let server = up(launch.env("PLAZA_PORT", "0"));
    let client = awc::Client::default();

    let (status, health) = remote::send(&client, None, "GET", &format!("{}/health", server.base_url()), None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, doc) = remote::send(&client, None, "GET", &format!("{}/api/openapi.json", server.base_url()), None).await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.contains_key("/health"), "the built-in routes are listed");
    let entity_paths: Vec<&String> = paths
        .keys()
        .filter(|p| p.strip_prefix("/api/entities/").is_some_and(|rest| !rest.starts_with('{')))
        .collect();
    assert!(entity_paths.is_empty(), "no entities, no entity paths: {entity_paths:?}");
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    assert!(schemas.contains_key("Error"));
    let rows: Vec<&String> = schemas.iter().filter(|(_, s)| s["properties"]["createdAt"].is_object()).map(|(k, _)| k).collect();
    assert!(rows.is_empty(), "no row schemas (only the API's own): {rows:?}");
    assert!(dir.path().join("plaza.db").is_file(), "the default database is plaza.db in the working directory");
}

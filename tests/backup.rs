//! Process-level: `plaza backup` of a database a server keeps writing to, `plaza restore` of it
//! into a fresh place, and `restore` refusing a database that a running server holds.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::remote::{self, assert_gap_free, insert_load, integrity_check, pull_all, Progress};
use common::{serve, up};
use serde_json::{json, Value};

const ADMIN: &str = "backup-admin";
/// Rows written before the load starts, so the database spans many backup steps (SQLite copies
/// 256 pages, 1 MiB, per step) and a backup that restarts on every concurrent write would show.
const PRELOAD_ROWS: usize = 4_000;
const PRELOAD_PER_TRANSACT: usize = 500;
const WRITERS: usize = 4;
/// Writes acknowledged before the backup starts.
const WARMUP_ACKS: usize = 100;

/// Runs `plaza ARGS --db DB` to completion.
fn plaza_cli(args: &[&Path], db: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plaza")).args(args).arg("--db").arg(db).output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn preload(client: &awc::Client, base: &str) {
    let filler = "x".repeat(300);
    for chunk in 0..PRELOAD_ROWS / PRELOAD_PER_TRANSACT {
        let ops: Vec<Value> = (0..PRELOAD_PER_TRANSACT)
            .map(|i| json!({"op": "insert", "entity": "Todo", "id": format!("pre-{chunk}-{i}"),
                            "data": {"title": format!("{filler} {chunk}/{i}"), "done": false}}))
            .collect();
        let (status, body) =
            remote::send(client, Some(ADMIN), "POST", &format!("{base}/api/transact"), Some(&json!(ops))).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[actix_web::test]
async fn a_backup_taken_under_write_load_restores_into_a_server_that_continues_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (live, out, restored) = (dir.path().join("live.db"), dir.path().join("backup.db"), dir.path().join("restored.db"));
    let server = up(serve(&live, ADMIN));
    let base = server.base_url();
    let client = awc::Client::default();
    preload(&client, &base).await;

    let progress = Progress::default();
    let load = insert_load(&client, ADMIN, &base, "load", WRITERS, &progress);
    let backup = async {
        // The backup must run while rows are being written.
        progress.until_acked(WARMUP_ACKS).await;
        let started = std::time::Instant::now();
        let (out_path, live_path) = (out.clone(), live.clone());
        let output = actix_web::rt::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_plaza")).arg("backup").arg(&out_path).arg("--db").arg(&live_path).output()
        })
        .await
        .unwrap()
        .unwrap();
        let finished = std::time::Instant::now();
        progress.stop();
        (started, finished, output)
    };
    let (acked, (started, finished, output)) = futures_util::future::join(load, backup).await;
    assert!(output.status.success(), "backup under load failed: {}", stderr(&output));
    let during = acked.iter().filter(|a| a.at > started && a.at < finished).count();
    assert!(during > 0, "writes were acknowledged while the backup ran ({} in all)", acked.len());
    let before: Vec<_> = acked.iter().filter(|a| a.at < started).collect();
    assert!(!before.is_empty());
    drop(server);

    let restore = plaza_cli(&[Path::new("restore"), &out], &restored);
    assert!(restore.status.success(), "{}", stderr(&restore));
    assert_eq!(integrity_check(&restored), "ok");

    let server = up(serve(&restored, ADMIN));
    let base = server.base_url();
    let before_count = before.len();
    for row in before {
        let (status, got) =
            remote::send(&client, Some(ADMIN), "GET", &format!("{base}/api/entities/Todo/{}", row.id), None).await;
        assert_eq!((status, got["title"].as_str()), (200, Some(row.title.as_str())), "{} was acknowledged before the backup", row.id);
    }
    let (status, got) = remote::send(&client, Some(ADMIN), "GET", &format!("{base}/api/entities/Todo/pre-7-499"), None).await;
    assert_eq!(status, 200, "{got}");

    let log = pull_all(&client, ADMIN, &base).await;
    assert_gap_free(&log);
    let last = log.len() as i64;
    assert!(last as usize >= PRELOAD_ROWS + before_count, "the restored log holds the preload and the load before the backup");
    let (status, _) = remote::send(
        &client,
        Some(ADMIN),
        "POST",
        &format!("{base}/api/entities/Todo"),
        Some(&json!({"title": "after the restore", "done": false})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, next) = remote::send(&client, Some(ADMIN), "GET", &format!("{base}/api/sync/pull?since={last}"), None).await;
    assert_eq!(next["changes"][0]["seq"].as_i64(), Some(last + 1), "the next seq continues after the restored log: {next}");
    assert_eq!(next["changes"][0]["data"]["title"], "after the restore");
}

#[actix_web::test]
async fn restore_refuses_a_database_a_running_server_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (dir.path().join("plaza.db"), dir.path().join("backup.db"));
    let client = awc::Client::default();
    let insert = |base: String, id: &'static str| {
        let client = &client;
        async move {
            let body = json!({"id": id, "title": id, "done": false});
            remote::send(client, Some(ADMIN), "POST", &format!("{base}/api/entities/Todo"), Some(&body)).await.0
        }
    };
    let get = |base: String, id: &'static str| {
        let client = &client;
        async move { remote::send(client, Some(ADMIN), "GET", &format!("{base}/api/entities/Todo/{id}"), None).await.0 }
    };

    let mut server = up(serve(&db, ADMIN));
    assert_eq!(insert(server.base_url(), "in-backup").await, 201);
    let backup = plaza_cli(&[Path::new("backup"), &out], &db);
    assert!(backup.status.success(), "{}", stderr(&backup));
    assert_eq!(insert(server.base_url(), "after-backup").await, 201);

    let refused = plaza_cli(&[Path::new("restore"), &out], &db);
    assert!(!refused.status.success(), "restore over a served database must fail");
    assert!(stderr(&refused).contains("in use by a running plaza server"), "{}", stderr(&refused));
    assert_eq!(get(server.base_url(), "after-backup").await, 200, "the served database is untouched");

    // A killed server leaves no stale lock: restore now goes ahead.
    server.kill().unwrap();
    let restored = plaza_cli(&[Path::new("restore"), &out], &db);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let server = up(serve(&db, ADMIN));
    assert_eq!(get(server.base_url(), "in-backup").await, 200);
    assert_eq!(get(server.base_url(), "after-backup").await, 404, "the restore replaced the database");
}

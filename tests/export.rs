//! Process-level: `GET /api/export` streams a large database in constant memory. The server is
//! restarted after loading the rows, so its resident memory starts from a clean baseline, and
//! that memory is sampled while the export is read.

mod common;

use common::process::rss_kib;
use common::{serve, up};
use futures_util::StreamExt;

const ADMIN: &str = "export-admin";
const ROWS: usize = 200_000;
/// The bound on how much the server may grow while exporting.
const MAX_GROWTH_KIB: u64 = 20 * 1024;

#[actix_web::test]
async fn exporting_200k_rows_keeps_the_servers_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plaza.db");
    let client = awc::Client::builder().timeout(std::time::Duration::from_secs(120)).finish();
    // The server creates the schema; the rows go straight into the file (the API would take
    // minutes in a debug build, and this test is about reading them back).
    drop(up(serve(&db, ADMIN)));
    {
        let mut conn = rusqlite::Connection::open(&db).unwrap();
        let tx = conn.transaction().unwrap();
        let mut insert = tx
            .prepare("INSERT INTO \"Todo\" (id, \"createdAt\", \"updatedAt\", title, done) VALUES (?, ?, ?, ?, 0)")
            .unwrap();
        let (now, title) = ("2026-11-30T00:00:00.000Z", "t".repeat(100));
        for i in 0..ROWS {
            insert.execute(rusqlite::params![format!("row-{i:07}"), now, now, format!("{title} {i}")]).unwrap();
        }
        drop(insert);
        tx.commit().unwrap();
    }
    let server = up(serve(&db, ADMIN));
    let pid = server.pid();
    let before = rss_kib(pid).expect("VmRSS of the server");
    let mut resp = client
        .get(format!("{}/api/export", server.base_url()))
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (mut lines, mut bytes, mut peak) = (0usize, 0usize, before);
    while let Some(chunk) = resp.next().await {
        let chunk = chunk.unwrap();
        lines += chunk.iter().filter(|b| **b == b'\n').count();
        bytes += chunk.len();
        peak = peak.max(rss_kib(pid).unwrap_or(0));
    }
    assert_eq!(lines, ROWS, "every row exported once");
    let growth = peak.saturating_sub(before);
    println!("export: {ROWS} rows, {} MiB of NDJSON; server RSS {before} KiB before, peak {peak} KiB (+{growth} KiB)", bytes >> 20);
    assert!(bytes > MAX_GROWTH_KIB as usize * 1024, "the export must be larger than the bound for the test to mean anything");
    assert!(growth < MAX_GROWTH_KIB, "server RSS grew by {growth} KiB while exporting (bound {MAX_GROWTH_KIB} KiB)");
}

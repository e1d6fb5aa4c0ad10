//! Process-level crash loop: the built `plaza` binary is SIGKILLed at random moments while
//! writers run mixed inserts, patches, deletes and `/api/transact` calls against it, and
//! restarted on the same database each time. Afterwards every acknowledged write is there with
//! its content (every acknowledged delete absent), every unanswered one either happened whole
//! or not at all (a transact all or nothing), the change log has no gap in its seqs and agrees
//! with the rows, and `PRAGMA integrity_check` is `ok`.
//!
//! `PLAZA_CRASH_KILLS=N` sets the number of kills (default [`DEFAULT_KILLS`]); the figures are
//! printed (`cargo test --release --test crash_loop -- --nocapture`).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use common::remote::{assert_gap_free, integrity_check, pull_all, try_send, Progress};
use common::{serve, up};
use serde_json::{json, Value};

const ADMIN: &str = "crash-admin";
const DEFAULT_KILLS: usize = 3;
const WRITERS: usize = 6;
/// Writes acknowledged by each server before its kill may come, so every kill lands under load.
const ACKS_PER_ROUND: usize = 60;
/// After those, the kill comes at a random moment within this long.
const MAX_KILL_DELAY_MS: u64 = 400;

/// A row's content as the test wrote it.
#[derive(Clone, Debug, PartialEq)]
struct Content {
    title: String,
    done: bool,
}

/// What a row may be after the crashes: `None` = absent.
#[derive(Clone, Debug)]
enum Expect {
    /// The last write to it was acknowledged.
    Known(Option<Content>),
    /// Its last write got no answer (the server was killed): either outcome. Such a row is not
    /// written again, so it ends in exactly one of these.
    Either(Option<Content>, Option<Content>),
}

/// An unanswered transact: each op's row before and after; all must have happened, or none.
struct OpenTransact {
    ops: Vec<(String, Option<Content>, Option<Content>)>,
}

/// Where the current server is (`None` while it is down), shared by the coordinator and the
/// writers (one thread).
#[derive(Default)]
struct Current {
    base: RefCell<Option<String>>,
    generation: Cell<u64>,
    changed: tokio::sync::Notify,
}

impl Current {
    fn set(&self, base: Option<String>) {
        *self.base.borrow_mut() = base;
        self.generation.set(self.generation.get() + 1);
        self.changed.notify_waiters();
    }

    /// Waits until the server changes from the one of `generation`, or the run stops.
    async fn next(&self, generation: u64, progress: &Progress) {
        loop {
            let changed = self.changed.notified();
            if self.generation.get() != generation || progress.is_stopped() {
                return;
            }
            changed.await;
        }
    }
}

/// What one writer did.
#[derive(Default)]
struct Writer {
    rows: BTreeMap<String, Expect>,
    open_transacts: Vec<OpenTransact>,
    acked: BTreeMap<&'static str, usize>,
    unanswered: usize,
}

impl Writer {
    /// A row whose last write was acknowledged and which exists, picked by `r`.
    fn live_row(&self, r: u64) -> Option<(String, Content)> {
        let live: Vec<(&String, &Content)> = self
            .rows
            .iter()
            .filter_map(|(id, e)| match e {
                Expect::Known(Some(c)) => Some((id, c)),
                _ => None,
            })
            .collect();
        (!live.is_empty()).then(|| {
            let (id, c) = live[(r % live.len() as u64) as usize];
            (id.clone(), c.clone())
        })
    }
}

fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

fn row(c: &Content) -> Value {
    json!({"title": c.title, "done": c.done})
}

/// One writer: a random op at a time against the current server, until the run stops.
async fn write_loop(client: &awc::Client, w: usize, current: &Current, progress: &Progress) -> Writer {
    let mut me = Writer::default();
    let token = Some(ADMIN);
    for n in 0.. {
        if progress.is_stopped() {
            break;
        }
        let generation = current.generation.get();
        let Some(base) = current.base.borrow().clone() else {
            current.next(generation, progress).await;
            continue;
        };
        let fresh = |what: &str| Content { title: format!("w{w} {what} {n}"), done: n % 2 == 1 };
        let r = random();
        let picked = me.live_row(r >> 8);
        // (kind, rows it writes as (id, before, after), request)
        let (kind, writes, method, url, body, ok) = match (r % 10, picked) {
            (0..=3, _) | (_, None) => {
                let (id, c) = (format!("w{w}-i{n}"), fresh("insert"));
                let body = json!({"id": id, "title": c.title, "done": c.done});
                ("insert", vec![(id, None, Some(c))], "POST", format!("{base}/api/entities/Todo"), Some(body), 201)
            }
            (4..=5, Some((id, old))) => {
                let c = fresh("patch");
                let url = format!("{base}/api/entities/Todo/{id}");
                ("patch", vec![(id, Some(old), Some(c.clone()))], "PATCH", url, Some(row(&c)), 200)
            }
            (6, Some((id, old))) => {
                let url = format!("{base}/api/entities/Todo/{id}");
                ("delete", vec![(id, Some(old), None)], "DELETE", url, None, 200)
            }
            (_, Some((id, old))) => {
                let (a, b, c) = (fresh("tx-insert-a"), fresh("tx-insert-b"), fresh("tx-patch"));
                let (ida, idb) = (format!("w{w}-t{n}a"), format!("w{w}-t{n}b"));
                let ops = json!([
                    {"op": "insert", "entity": "Todo", "id": ida, "data": row(&a)},
                    {"op": "insert", "entity": "Todo", "id": idb, "data": row(&b)},
                    {"op": "update", "entity": "Todo", "id": id, "data": row(&c)},
                ]);
                let writes = vec![(ida, None, Some(a)), (idb, None, Some(b)), (id, Some(old), Some(c))];
                ("transact", writes, "POST", format!("{base}/api/transact"), Some(ops), 200)
            }
        };
        match try_send(client, token, method, &url, body.as_ref()).await {
            Ok((status, reply)) => {
                // Only a killed server fails to answer; a live one must accept every write.
                assert_eq!(status, ok, "{kind} {url}: {reply}");
                for (id, _, after) in writes {
                    me.rows.insert(id, Expect::Known(after));
                }
                *me.acked.entry(kind).or_default() += 1;
                progress.ack();
            }
            Err(_) => {
                me.unanswered += 1;
                if writes.len() > 1 {
                    me.open_transacts.push(OpenTransact { ops: writes.clone() });
                }
                for (id, before, after) in writes {
                    me.rows.insert(id, Expect::Either(before, after));
                }
                // The server is gone (or going): wait for the next one.
                current.next(generation, progress).await;
            }
        }
    }
    me
}

/// Every Todo row, through the cursor endpoint.
async fn all_rows(client: &awc::Client, base: &str) -> HashMap<String, Content> {
    let mut rows = HashMap::new();
    let mut after = String::new();
    loop {
        let url = format!("{base}/api/entities/Todo/cursor?limit=1000{after}");
        let (status, page) = try_send(client, Some(ADMIN), "GET", &url, None).await.unwrap();
        assert_eq!(status, 200, "{page}");
        for r in page["data"].as_array().unwrap() {
            let content = Content { title: r["title"].as_str().unwrap().into(), done: r["done"] == 1 };
            rows.insert(r["id"].as_str().unwrap().to_string(), content);
        }
        match page["next_cursor"].as_str() {
            Some(cursor) if page["has_more"] == true => after = format!("&after={cursor}"),
            _ => return rows,
        }
    }
}

#[actix_web::test]
async fn acknowledged_writes_survive_sigkill_at_random_moments() {
    let kills: usize = std::env::var("PLAZA_CRASH_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(DEFAULT_KILLS);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("plaza.db");
    let client = awc::Client::builder().timeout(Duration::from_secs(30)).finish();
    let (current, progress) = (Current::default(), Progress::default());

    let coordinator = async {
        for _ in 0..kills {
            let mut server = up(serve(&db, ADMIN));
            current.set(Some(server.base_url()));
            progress.until_acked(progress.acked() + ACKS_PER_ROUND).await;
            actix_web::rt::time::sleep(Duration::from_millis(random() % MAX_KILL_DELAY_MS)).await;
            server.kill().unwrap();
            current.set(None);
        }
        let server = up(serve(&db, ADMIN));
        current.set(Some(server.base_url()));
        progress.until_acked(progress.acked() + ACKS_PER_ROUND).await;
        progress.stop();
        // Wakes the writers still waiting for a server, so they see the stop.
        current.set(None);
        server
    };
    let writers = futures_util::future::join_all((0..WRITERS).map(|w| write_loop(&client, w, &current, &progress)));
    let (mut server, writers) = futures_util::future::join(coordinator, writers).await;

    let base = server.base_url();
    let rows = all_rows(&client, &base).await;
    let log = pull_all(&client, ADMIN, &base).await;
    assert_gap_free(&log);
    // The last change of each row says what the row is: rows and log commit together.
    let mut last_change: HashMap<&str, &Value> = HashMap::new();
    for change in &log {
        last_change.insert(change["row_id"].as_str().unwrap(), change);
    }
    for (id, content) in &rows {
        let change = last_change.get(id.as_str()).unwrap_or_else(|| panic!("row {id} has no change"));
        assert_ne!(change["kind"], "delete", "row {id} exists but its last change is a delete");
        assert_eq!(change["data"]["title"].as_str(), Some(content.title.as_str()), "row {id} and its last change");
    }
    for (id, change) in &last_change {
        if change["kind"] == "delete" {
            assert!(!rows.contains_key(*id), "{id} was deleted last but exists");
        }
    }

    let mut acked: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut unanswered, mut tracked) = (0, 0);
    for writer in &writers {
        for (id, expect) in &writer.rows {
            tracked += 1;
            let actual = rows.get(id).cloned();
            match expect {
                Expect::Known(want) => assert_eq!(&actual, want, "row {id}: its last write was acknowledged"),
                Expect::Either(a, b) => assert!(actual == *a || actual == *b, "row {id} is {actual:?}, neither {a:?} nor {b:?}"),
            }
        }
        for tx in &writer.open_transacts {
            let applied: Vec<bool> = tx.ops.iter().map(|(id, _, after)| rows.get(id).cloned() == *after).collect();
            assert!(applied.iter().all(|a| *a) || applied.iter().all(|a| !a), "a transact half applied: {applied:?}");
        }
        for (kind, n) in &writer.acked {
            *acked.entry(kind).or_default() += n;
        }
        unanswered += writer.unanswered;
    }
    let total: usize = acked.values().sum();
    eprintln!(
        "crash loop: {kills} SIGKILLs, {total} acknowledged writes {acked:?}, {unanswered} unanswered, \
         {tracked} rows tracked, {} rows, change log 1..={}",
        rows.len(),
        log.len()
    );

    server.kill().unwrap();
    assert_eq!(integrity_check(&db), "ok");
}

//! Requests to a server in another process (the process-level tests), over a real socket.

use serde_json::Value;

/// Status and JSON body (`Null` when the body is not JSON), or why no answer came: the server
/// may have been killed on purpose, so a transport error is a value, not a panic.
pub async fn try_send(
    client: &awc::Client,
    token: Option<&str>,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let method = method.parse().map_err(|e| format!("method {method}: {e}"))?;
    let mut req = client.request(method, url);
    if let Some(token) = token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    let mut resp = match body {
        Some(b) => req.send_json(b).await,
        None => req.send().await,
    }
    .map_err(|e| format!("{url}: {e}"))?;
    let bytes = resp.body().limit(64 << 20).await.map_err(|e| format!("{url}: reading the body: {e}"))?;
    Ok((resp.status().as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

/// As [`try_send`], for a server that must answer.
pub async fn send(client: &awc::Client, token: Option<&str>, method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    try_send(client, token, method, url, body).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Every change in the log, paged through `/api/sync/pull` (admin: no policy filtering).
pub async fn pull_all(client: &awc::Client, token: &str, base: &str) -> Vec<Value> {
    let token = Some(token);
    let mut changes = Vec::new();
    let mut since = 0;
    loop {
        let (status, page) = send(client, token, "GET", &format!("{base}/api/sync/pull?since={since}&limit=1000"), None).await;
        assert_eq!(status, 200, "pull since {since}: {page}");
        let batch = page["changes"].as_array().cloned().unwrap_or_default();
        since = page["cursor"]["last_seq"].as_i64().unwrap_or(since);
        let more = page["has_more"].as_bool().unwrap_or(false);
        changes.extend(batch);
        if !more {
            return changes;
        }
    }
}

/// Fails unless the seqs of `changes` are exactly 1, 2, 3, ... (no gap, no repeat).
pub fn assert_gap_free(changes: &[Value]) {
    for (i, change) in changes.iter().enumerate() {
        assert_eq!(change["seq"].as_i64(), Some(i as i64 + 1), "change log gap or repeat at position {i}: {change}");
    }
}

/// `PRAGMA integrity_check` of the database file, with no server running on it. Opened
/// read-write on purpose: after a SIGKILL the WAL is recovered first, as a restart would.
pub fn integrity_check(db: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

/// What a test's coordinator and its write loops share (one thread): a stop flag, and a count
/// of acknowledged writes that can be awaited.
#[derive(Default)]
pub struct Progress {
    stopped: std::cell::Cell<bool>,
    acked: std::cell::Cell<usize>,
    changed: tokio::sync::Notify,
}

impl Progress {
    pub fn stop(&self) {
        self.stopped.set(true);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.get()
    }

    pub fn ack(&self) {
        self.acked.set(self.acked.get() + 1);
        self.changed.notify_waiters();
    }

    pub fn acked(&self) -> usize {
        self.acked.get()
    }

    /// Resolves once `n` writes in all have been acknowledged.
    pub async fn until_acked(&self, n: usize) {
        loop {
            // Created before the check, so an ack in between is not missed.
            let changed = self.changed.notified();
            if self.acked.get() >= n {
                return;
            }
            changed.await;
        }
    }
}

/// A row a write load got 201 for, and when the answer came.
pub struct Acked {
    pub id: String,
    pub title: String,
    pub at: std::time::Instant,
}

/// `writers` loops, each inserting Todo rows (ids `{tag}-{writer}-{n}`) one after another,
/// until `progress` is stopped or a request gets no 201 (the server went away, or refuses
/// writes while it drains). Returns every row that was acknowledged.
pub async fn insert_load(
    client: &awc::Client,
    token: &str,
    base: &str,
    tag: &str,
    writers: usize,
    progress: &Progress,
) -> Vec<Acked> {
    let url = format!("{base}/api/entities/Todo");
    let loops = (0..writers).map(|w| {
        let url = &url;
        async move {
            let mut acked = Vec::new();
            for n in 0.. {
                if progress.is_stopped() {
                    break;
                }
                let (id, title) = (format!("{tag}-{w}-{n}"), format!("{tag} row {n} of writer {w}"));
                let body = serde_json::json!({"id": id, "title": title, "done": false});
                match try_send(client, Some(token), "POST", url, Some(&body)).await {
                    Ok((201, _)) => {
                        acked.push(Acked { id, title, at: std::time::Instant::now() });
                        progress.ack();
                    }
                    _ => break,
                }
            }
            acked
        }
    });
    futures_util::future::join_all(loops).await.into_iter().flatten().collect()
}

//! Point reads (one row by primary key) on the calling thread, on a read-only connection that
//! thread keeps for itself: no hand-off to a read thread and back, which cost more than the read.
//!
//! Why this may run on an HTTP worker (an exception to "no SQLite on an arbiter thread", see
//! docs/PERFORMANCE.md): a primary-key lookup walks a B-tree a few pages deep, on pages that are
//! hot in the connection's page cache or the memory map, and a WAL reader never waits for the
//! writer. Only lookups by primary key come here; scans, lists, queries and exports stay on the
//! read threads.
//!
//! On a thread with an actix arbiter (an HTTP worker) the connection keeps its read transaction
//! open from one lookup to the next while the Writer's commit count (`DataVersion`) is
//! unchanged: nothing acknowledged is missing from that snapshot, and each lookup skips taking
//! and dropping the WAL read lock (`fcntl`), about a fifth of a get's time on the worker. A
//! lookup after a commit starts a new transaction, and one idle for `SNAPSHOT_IDLE` is ended by
//! a timer on the arbiter, so a quiet reader never holds the WAL back from a checkpoint.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::error::Result;

/// Opens this thread's connection to one store on first use. Cheap to clone.
#[derive(Clone)]
pub struct PointReads {
    /// Tells this store's connections apart from another store's on the same thread (tests run
    /// many apps on one thread).
    store: u64,
    path: Arc<PathBuf>,
    /// Dropped with the last clone: threads then close their connection to this store.
    alive: Arc<()>,
}

/// How long a kept read transaction may sit unused before it is ended.
pub const SNAPSHOT_IDLE: Duration = Duration::from_millis(5);

struct ThreadConnection {
    store: u64,
    alive: Weak<()>,
    conn: Connection,
    /// The open read transaction, if one is kept.
    snapshot: Option<Snapshot>,
}

struct Snapshot {
    /// The Writer's commit count when it began.
    version: u64,
    used: Instant,
}

impl ThreadConnection {
    /// Ends the kept read transaction, if any.
    fn end_snapshot(&mut self) -> Result<()> {
        self.snapshot = None;
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("COMMIT")?;
        }
        Ok(())
    }
}

thread_local! {
    static CONNECTIONS: RefCell<Vec<ThreadConnection>> = const { RefCell::new(Vec::new()) };
    /// An idle check is scheduled on this thread's arbiter.
    static CLOSER_ARMED: Cell<bool> = const { Cell::new(false) };
}

/// Schedules [`end_idle_snapshots`] on this thread's arbiter; false when there is none.
fn arm_closer() -> bool {
    if CLOSER_ARMED.get() {
        return true;
    }
    let Some(arbiter) = actix::Arbiter::try_current() else { return false };
    CLOSER_ARMED.set(true);
    arbiter.spawn(async {
        actix::clock::sleep(SNAPSHOT_IDLE).await;
        end_idle_snapshots();
    })
}

/// Ends this thread's read transactions unused for `SNAPSHOT_IDLE`; checks again later while
/// any stays open.
fn end_idle_snapshots() {
    CLOSER_ARMED.set(false);
    let open = CONNECTIONS.with(|cell| {
        let Ok(mut conns) = cell.try_borrow_mut() else { return true };
        let mut open = false;
        for c in conns.iter_mut() {
            match &c.snapshot {
                Some(s) if s.used.elapsed() < SNAPSHOT_IDLE => open = true,
                Some(_) => {
                    if let Err(e) = c.end_snapshot() {
                        tracing::warn!(error = %e, "could not end a point-read transaction");
                    }
                }
                None => {}
            }
        }
        open
    });
    if open {
        arm_closer();
    }
}

impl PointReads {
    pub fn new(path: &Path) -> PointReads {
        static NEXT_STORE: AtomicU64 = AtomicU64::new(0);
        PointReads { store: NEXT_STORE.fetch_add(1, Ordering::Relaxed), path: Arc::new(path.to_path_buf()), alive: Arc::new(()) }
    }

    /// Runs `f` on this thread's read connection to the store (opened on first use), in a
    /// snapshot that holds every commit counted up to `version` (the Writer's commit count, read
    /// just before). `f` must not make another point read itself.
    pub fn with_conn<R>(&self, version: u64, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        CONNECTIONS.with(|cell| {
            let mut conns = cell.borrow_mut();
            conns.retain(|c| c.alive.strong_count() > 0);
            let at = match conns.iter().position(|c| c.store == self.store) {
                Some(at) => at,
                None => {
                    let conn = self.open()?;
                    conns.push(ThreadConnection { store: self.store, alive: Arc::downgrade(&self.alive), conn, snapshot: None });
                    conns.len() - 1
                }
            };
            let c = &mut conns[at];
            match &mut c.snapshot {
                // Nothing was committed since it began.
                Some(s) if s.version == version => s.used = Instant::now(),
                _ => {
                    c.end_snapshot()?;
                    if arm_closer() {
                        c.conn.execute_batch("BEGIN")?;
                        c.snapshot = Some(Snapshot { version, used: Instant::now() });
                    }
                }
            }
            let result = f(&c.conn);
            if result.is_err() {
                c.end_snapshot()?;
            }
            result
        })
    }

    fn open(&self) -> Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(&*self.path, flags)?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(super::READ_TUNING)?;
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(dir: &tempfile::TempDir, name: &str, value: &str) -> PointReads {
        let path = dir.path().join(name);
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!("PRAGMA journal_mode=WAL; CREATE TABLE t (id TEXT PRIMARY KEY, v TEXT); INSERT INTO t VALUES ('a', '{value}');"))
            .unwrap();
        PointReads::new(&path)
    }

    fn read(store: &PointReads) -> String {
        store.with_conn(0, |c| Ok(c.query_row("SELECT v FROM t WHERE id = 'a'", [], |r| r.get(0))?)).unwrap()
    }

    #[test]
    fn each_store_reads_its_own_file_on_one_thread_and_sees_later_commits() {
        let dir = tempfile::tempdir().unwrap();
        let (one, two) = (store_with(&dir, "one.db", "first"), store_with(&dir, "two.db", "second"));
        assert_eq!((read(&one), read(&two)), ("first".to_string(), "second".to_string()));
        Connection::open(dir.path().join("one.db")).unwrap().execute("UPDATE t SET v = 'changed'", []).unwrap();
        assert_eq!(read(&one), "changed", "a kept connection still sees what was committed since");
    }

    #[test]
    fn a_dropped_store_closes_its_connection_on_the_next_read() {
        let dir = tempfile::tempdir().unwrap();
        let (gone, kept) = (store_with(&dir, "gone.db", "x"), store_with(&dir, "kept.db", "y"));
        read(&gone);
        read(&kept);
        drop(gone);
        read(&kept);
        assert_eq!(CONNECTIONS.with(|c| c.borrow().len()), 1);
    }

    #[test]
    fn on_an_arbiter_a_snapshot_is_kept_until_a_commit_is_counted_or_it_idles() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(&dir, "kept.db", "first");
        let read_at = |version: u64| store.with_conn(version, |c| Ok(c.query_row("SELECT v FROM t WHERE id = 'a'", [], |r| r.get::<_, String>(0))?)).unwrap();
        let in_transaction = || CONNECTIONS.with(|c| c.borrow().iter().any(|c| !c.conn.is_autocommit()));
        actix::System::new().block_on(async {
            assert_eq!(read_at(0), "first");
            assert!(in_transaction(), "kept open for the next lookup");
            // A commit the Writer has not counted yet is not seen; once counted, it is.
            Connection::open(dir.path().join("kept.db")).unwrap().execute("UPDATE t SET v = 'changed'", []).unwrap();
            assert_eq!(read_at(0), "first");
            assert_eq!(read_at(1), "changed");
            // Unused, it is ended by the arbiter's timer.
            let mut waited = Duration::ZERO;
            while in_transaction() && waited < Duration::from_secs(5) {
                actix::clock::sleep(Duration::from_millis(1)).await;
                waited += Duration::from_millis(1);
            }
            assert!(!in_transaction(), "ended after {waited:?} idle");
        });
        // Without an arbiter nothing is kept.
        assert_eq!(read_at(2), "changed");
        assert!(!in_transaction());
    }
}

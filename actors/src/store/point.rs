//! Point reads (one row by primary key) on the calling thread, on a read-only connection that
//! thread keeps for itself: no hand-off to a read thread and back, which cost more than the read.
//!
//! Why this may run on an HTTP worker (an exception to "no SQLite on an arbiter thread", see
//! docs/PERFORMANCE.md): a primary-key lookup walks a B-tree a few pages deep, on pages that are
//! hot in the connection's page cache or the memory map, and a WAL reader never waits for the
//! writer. Only lookups by primary key come here; scans, lists, queries and exports stay on the
//! read threads.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

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

struct ThreadConnection {
    store: u64,
    alive: Weak<()>,
    conn: Connection,
}

thread_local! {
    static CONNECTIONS: RefCell<Vec<ThreadConnection>> = const { RefCell::new(Vec::new()) };
}

impl PointReads {
    pub fn new(path: &Path) -> PointReads {
        static NEXT_STORE: AtomicU64 = AtomicU64::new(0);
        PointReads { store: NEXT_STORE.fetch_add(1, Ordering::Relaxed), path: Arc::new(path.to_path_buf()), alive: Arc::new(()) }
    }

    /// Runs `f` on this thread's read connection to the store (opened on first use). `f` must not
    /// make another point read itself.
    pub fn with_conn<R>(&self, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
        CONNECTIONS.with(|cell| {
            let mut conns = cell.borrow_mut();
            conns.retain(|c| c.alive.strong_count() > 0);
            let at = match conns.iter().position(|c| c.store == self.store) {
                Some(at) => at,
                None => {
                    conns.push(ThreadConnection { store: self.store, alive: Arc::downgrade(&self.alive), conn: self.open()? });
                    conns.len() - 1
                }
            };
            f(&conns[at].conn)
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
        store.with_conn(|c| Ok(c.query_row("SELECT v FROM t WHERE id = 'a'", [], |r| r.get(0))?)).unwrap()
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
}

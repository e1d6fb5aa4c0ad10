//! SQLite storage: schema and migrations from the manifest, the single `Writer`, and a pool of
//! read connections.

pub mod aggregate;
pub mod checkpoint;
pub mod graph;
pub mod link;
pub mod point;
pub mod queue;
pub mod reader;
pub mod schema;
pub mod search;
mod wal_buffer;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags};

use crate::changelog::LogBounds;
use crate::error::{PlazaError, Result};
use crate::model::manifest::AppManifest;
use crate::model::policy::Policies;
pub use reader::Reader;

/// How hard a commit tries to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// WAL + synchronous=NORMAL: a commit survives a process crash (kill -9); the last
    /// commits may be lost on power failure. SQLite's own recommendation for WAL.
    Normal,
    /// synchronous=FULL: every group commit is fsynced before anyone is answered.
    Full,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    pub changelog_retain: i64,
    /// Sync-push op ids remembered for dedup.
    pub op_retain: i64,
    pub durability: Durability,
    pub read_pool_size: u32,
}

/// An opened, migrated database: the write connection's path and settings, the read pool,
/// and where the change log stands.
pub struct OpenedStore {
    pub reader: Reader,
    pub bounds: LogBounds,
    /// The connection that ran the migrations, for one-time loads at start (sessions).
    pub setup: Connection,
}

pub fn open_write_connection(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = match wal_buffer::register() {
        Ok(()) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), wal_buffer::VFS_NAME)?,
        Err(rc) => {
            tracing::warn!(code = rc, "could not register the WAL-buffering VFS; writing through SQLite's own");
            Connection::open(path)?
        }
    };
    let sync = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    // With `normal`, `checkpoint::Checkpointer` copies the WAL back on its own thread and a
    // commit checkpoints only as a backstop, when the WAL has grown past `BACKSTOP_PAGES`
    // frames. With `full` SQLite's usual threshold stays (see `checkpoint`).
    let autocheckpoint = if checkpoint::on_own_thread(durability) { checkpoint::BACKSTOP_PAGES } else { 1000 };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={sync}; PRAGMA busy_timeout=5000;
         PRAGMA foreign_keys=OFF; PRAGMA cache_size=-{WRITER_CACHE_KIB}; PRAGMA temp_store=MEMORY;
         PRAGMA wal_autocheckpoint={autocheckpoint}; PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT};"
    ))?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// The Writer's page cache in KiB. Kept small on purpose: once a B-tree balance has swapped
/// pages (SQLite parks one at the lock-byte page number meanwhile), the commit that follows
/// scans the whole cache's hash table (`pcache1TruncateUnsafe`), which at 32 MiB was 7% of the
/// Writer's time on single-row inserts and is 4 times less at 8 MiB. Writes mostly touch the
/// right edge of each B-tree; reads have their own connections and caches.
pub const WRITER_CACHE_KIB: i64 = 8_000;

/// Bytes the WAL file is truncated to after a checkpoint let it restart (it grows past this only
/// during a burst of writes between two checkpoints).
pub const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Read connections: a page cache and a memory map sized for hot point reads.
pub const READ_TUNING: &str = "PRAGMA busy_timeout=5000; PRAGMA cache_size=-16000; PRAGMA mmap_size=268435456;";
/// A whole-database scan (export) on a read connection: no map and a small cache, so it does not
/// pull the file into the server's memory.
pub const SCAN_TUNING: &str = "PRAGMA cache_size=-2000; PRAGMA mmap_size=0;";

/// Migrates the database to the manifest and opens the read pool.
pub fn open(options: &StoreOptions, manifest: Arc<AppManifest>, policies: Arc<Policies>) -> Result<OpenedStore> {
    let mut conn = open_write_connection(&options.path, options.durability)?;
    schema::migrate(&mut conn, &manifest)?;
    let bounds = writer::read_bounds(&conn)?;
    let manager = SqliteConnectionManager::file(&options.path)
        .with_flags(OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI)
        .with_init(|c| {
            c.set_prepared_statement_cache_capacity(256);
            c.execute_batch(READ_TUNING)
        });
    let pool = r2d2::Pool::builder()
        .max_size(options.read_pool_size.max(1))
        .min_idle(Some(1))
        // A checkout test is a query per request; a broken read connection fails its query instead.
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(10))
        .build(manager)
        .map_err(|e| PlazaError::Unavailable(format!("cannot open read pool: {e}")))?;
    let point = point::PointReads::new(&options.path);
    Ok(OpenedStore { reader: Reader::new(pool, point, manifest, policies), bounds, setup: conn })
}

/// Copies the live database at `from` to `to` with SQLite's online backup API: consistent
/// while a server keeps writing. All pages go in one step, inside one read transaction: in WAL
/// mode that blocks no writer, whereas a backup in several steps starts over whenever another
/// connection commits between them, so under a steady write load it may never finish.
pub fn backup(from: &Path, to: &Path) -> Result<()> {
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut dst = Connection::open(to)?;
    let copy = rusqlite::backup::Backup::new(&src, &mut dst)?;
    // A negative page count copies every page in one step; Busy/Locked (the destination is in
    // use) are worth retrying.
    while copy.step(-1)? != rusqlite::backup::StepResult::Done {
        std::thread::sleep(BACKUP_RETRY);
    }
    Ok(())
}

/// Pause before a backup step is retried.
const BACKUP_RETRY: Duration = Duration::from_millis(5);

/// Replaces the database at `to` with the backup `from` (server stopped). The backup is checked
/// first, so a bad file never replaces a good database.
pub fn restore(from: &Path, to: &Path) -> Result<()> {
    let src = Connection::open_with_flags(from, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = src.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(PlazaError::Validation(format!("{} is not a sound database: {check}", from.display())));
    }
    let mut dst = Connection::open(to)?;
    rusqlite::backup::Backup::new(&src, &mut dst)?.run_to_completion(256, Duration::from_millis(0), None)?;
    Ok(())
}

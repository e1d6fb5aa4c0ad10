//! The WAL checkpoint, off the commit path. SQLite's automatic checkpoint runs inside the
//! commit that crosses the threshold, so every thousandth write or so waited for pages to be
//! copied into the database file. The write connection turns it off (`wal_autocheckpoint=0`)
//! and this thread, on a connection of its own, runs a PASSIVE checkpoint every
//! [`CHECKPOINT_EVERY`]: it never blocks the writer or a reader, and the writer restarts the WAL
//! from its start once everything in it is checkpointed, so the WAL stays about as large as a
//! few hundred milliseconds of writes (and `journal_size_limit` truncates the file after a burst).
//! Durability does not depend on it: a commit is in the WAL before it is acknowledged.
//!
//! Only with `Durability::Normal`. With `Full` every commit fsyncs the WAL, and a checkpoint
//! running beside it fsyncs the database file: on this file system the two waits pile up
//! (measured: inserts/s halved), so there SQLite's own checkpoint in the commit path stays.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::error::{PlazaError, Result};
use crate::store::{open_write_connection, Durability};

/// How often the WAL is copied back into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// Whether checkpoints run on their own thread for this durability (else inside commits).
pub fn on_own_thread(durability: Durability) -> bool {
    durability == Durability::Normal
}

/// The checkpoint thread; it stops when this is dropped (with the write connection's owner).
pub struct Checkpointer {
    _stop: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Starts the thread (`None` when this durability checkpoints inside commits).
    pub fn start(path: &Path, durability: Durability) -> Result<Option<Checkpointer>> {
        if !on_own_thread(durability) {
            return Ok(None);
        }
        let conn = open_write_connection(path, durability)?;
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("plaza-checkpoint".into())
            .spawn(move || {
                // Nothing is ever sent: the channel only closes when the Checkpointer drops.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
                    }
                }
            })
            .map_err(|e| PlazaError::Internal(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Some(Checkpointer { _stop: stop }))
    }
}

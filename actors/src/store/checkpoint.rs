//! The WAL checkpoint, mostly off the commit path. SQLite's automatic checkpoint runs inside
//! the commit that finds the WAL past its threshold (1000 pages), so every so many writes one
//! commit waited for pages to be copied into the database file. Here a thread of its own, on a
//! connection of its own, runs a PASSIVE checkpoint every [`CHECKPOINT_EVERY`], which never
//! blocks the writer or a reader, so by the time a commit has to checkpoint little is left to
//! copy.
//!
//! A commit still has to: the WAL can only restart from its start when a checkpoint has copied
//! every frame, and one running beside a busy writer never catches up (measured: the WAL grew
//! to 1.5 GB in 10 s of inserts). So the write connection keeps SQLite's automatic checkpoint
//! as a backstop at [`BACKSTOP_PAGES`] frames: the commit that crosses it copies the few frames
//! the thread has not, nothing is appended meanwhile, and the next write restarts the WAL;
//! `journal_size_limit` then truncates the file. The WAL stays around that size.
//! Durability does not depend on any of it: a commit is in the WAL before it is acknowledged.
//!
//! Only with `Durability::Normal`. With `Full` every commit fsyncs the WAL, and a checkpoint
//! running beside it fsyncs the database file: the two waits pile up (measured: inserts/s
//! halved), so there SQLite's own checkpoint in the commit path stays as it was.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::error::{PlazaError, Result};
use crate::store::{open_write_connection, Durability};

/// How often the WAL is copied back into the database file.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// WAL frames (pages) past which the committing connection checkpoints itself (64 MiB of 4 KiB
/// pages), so the WAL restarts and stays bounded under any write load.
pub const BACKSTOP_PAGES: u32 = 16_384;

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

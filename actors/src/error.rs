//! The one error type of the subsystems. The server maps each variant to an HTTP status in
//! exactly one place (`src/error.rs`).

use std::sync::Arc;

use serde_json::{json, Value};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum PlazaError {
    #[error("unknown entity '{0}'")]
    UnknownEntity(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("too many attempts; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("cursor is outside the retained change log (oldest seq {oldest_seq}, last seq {last_seq})")]
    ResyncRequired { oldest_seq: i64, last_seq: i64 },
    #[error("{0}")]
    Unavailable(String),
    /// The write queue is full (for everyone, or for this client): retry after a pause.
    #[error("the server is busy with other writes; retry in {retry_after_secs} s")]
    Overloaded { retry_after_secs: u64 },
    /// A pushed op whose `op_id` was applied before; carries the first result (JSON).
    #[error("operation already applied")]
    Duplicate(String),
    /// A capacity limit (a full shard, too many shards): 409 with its own `code`.
    #[error("{message}")]
    LimitReached { code: &'static str, message: String },
    #[error("internal error: {0}")]
    Internal(String),
    /// SQLite failed. `failed` says what could not be done, in words a client may read;
    /// `detail` is SQLite's own text (paths, table names, SQL), for the log only.
    #[error("{failed}: {detail}")]
    Storage { failed: String, detail: String },
    /// Room caps, membership and resumes (each with its own code).
    #[error(transparent)]
    Room(#[from] RoomError),
}

/// What a storage failure is reported as when nothing more specific is known.
pub const STORAGE_FAILED: &str = "the database could not complete the request";

impl PlazaError {
    /// A storage failure re-described as the operation that failed (`"...the write"`); other
    /// errors are returned unchanged.
    pub fn failed_while(self, failed: &str) -> PlazaError {
        match self {
            PlazaError::Storage { detail, .. } => PlazaError::Storage { failed: failed.into(), detail },
            other => other,
        }
    }
}

pub type Result<T, E = PlazaError> = std::result::Result<T, E>;

impl From<rusqlite::Error> for PlazaError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            if f.code == rusqlite::ErrorCode::ConstraintViolation {
                // "UNIQUE constraint failed: Todo.title" names only what the manifest declares,
                // so the fields are worth telling; other constraint texts are SQLite's business.
                let unique = msg.as_deref().and_then(|m| m.strip_prefix("UNIQUE constraint failed: "));
                return PlazaError::Conflict(match unique {
                    Some(fields) => format!("{fields} must be unique: another row already has this value"),
                    None => "the change breaks a database constraint".into(),
                });
            }
        }
        PlazaError::Storage { failed: STORAGE_FAILED.into(), detail: e.to_string() }
    }
}

impl From<r2d2::Error> for PlazaError {
    fn from(e: r2d2::Error) -> Self {
        // r2d2 fails a checkout only by timing out: every read connection stayed busy.
        tracing::warn!(error = %e, "no read connection became free");
        PlazaError::Unavailable("the database is busy; retry shortly".into())
    }
}

impl From<actix::MailboxError> for PlazaError {
    fn from(e: actix::MailboxError) -> Self {
        PlazaError::Unavailable(format!("subsystem unavailable: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32, msg: &str) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), Some(msg.into()))
    }

    #[test]
    fn sqlite_text_stays_in_the_detail() {
        let e = PlazaError::from(failure(rusqlite::ffi::SQLITE_IOERR, "disk I/O error: /var/lib/plaza/plaza.db-wal"));
        let PlazaError::Storage { failed, detail } = e.clone().failed_while("the database could not complete the write") else {
            panic!("{e:?}")
        };
        assert_eq!(failed, "the database could not complete the write");
        assert!(detail.contains("disk I/O error"), "{detail}");
        let unique = PlazaError::from(failure(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE, "UNIQUE constraint failed: Todo.title"));
        assert_eq!(unique, PlazaError::Conflict("Todo.title must be unique: another row already has this value".into()));
        let check = PlazaError::from(failure(rusqlite::ffi::SQLITE_CONSTRAINT_CHECK, "CHECK constraint failed: length(x) < 5"));
        assert_eq!(check, PlazaError::Conflict("the change breaks a database constraint".into()));
        assert_eq!(PlazaError::NotFound("x".into()).failed_while("w"), PlazaError::NotFound("x".into()));
    }
}

/// What rooms answer beyond the common errors.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RoomError {
    #[error("room '{room}' is full ({max} members)")]
    Full { room: String, max: usize },
    #[error("the room state would be {size} bytes; a room's state is limited to {max} bytes")]
    StateTooLarge { size: usize, max: usize },
    #[error("this event is {size} bytes; room events are limited to {max} bytes")]
    EventTooLarge { size: usize, max: usize },
    #[error("a connection may be in at most {max} rooms")]
    TooManyRooms { max: usize },
    #[error("not a member of room '{room}': join it first")]
    NotMember { room: String },
    /// The `since`/`epoch` of a join cannot be resumed from: the current state is attached.
    #[error("{reason}; join again without since and start from the state given here")]
    ResyncRequired { reason: String, resync: Box<Resync> },
    /// The room stopped while the message was on its way (retried by [`crate::rooms::Rooms::join`]).
    #[error("the room is restarting; retry")]
    Gone,
}

/// Where a room stands, for a client that must start over.
#[derive(Debug, Clone, PartialEq)]
pub struct Resync {
    pub epoch: Arc<str>,
    pub seq: u64,
    pub state: Value,
    pub state_version: u64,
}

impl RoomError {
    pub fn code(&self) -> &'static str {
        match self {
            RoomError::Full { .. } => "ROOM_FULL",
            RoomError::StateTooLarge { .. } => "STATE_TOO_LARGE",
            RoomError::EventTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            RoomError::TooManyRooms { .. } => "TOO_MANY_ROOMS",
            RoomError::NotMember { .. } => "FORBIDDEN",
            RoomError::ResyncRequired { .. } => "RESYNC_REQUIRED",
            RoomError::Gone => "UNAVAILABLE",
        }
    }

    /// The HTTP status of the error.
    pub fn status(&self) -> u16 {
        match self {
            RoomError::Full { .. } => 409,
            RoomError::StateTooLarge { .. } | RoomError::TooManyRooms { .. } => 400,
            RoomError::EventTooLarge { .. } => 413,
            RoomError::NotMember { .. } => 403,
            RoomError::ResyncRequired { .. } => 410,
            RoomError::Gone => 503,
        }
    }

    /// Fields the error body carries besides `code` and `message`.
    pub fn details(&self) -> Option<Value> {
        match self {
            RoomError::ResyncRequired { resync, .. } => Some(json!({
                "epoch": &*resync.epoch,
                "seq": resync.seq,
                "state": resync.state,
                "state_version": resync.state_version,
            })),
            RoomError::Full { max, .. } | RoomError::TooManyRooms { max } => Some(json!({"max": max})),
            RoomError::StateTooLarge { max, .. } | RoomError::EventTooLarge { max, .. } => Some(json!({"max_bytes": max})),
            _ => None,
        }
    }
}

//! The one error type of the subsystems. The server maps each variant to an HTTP status in
//! exactly one place (`src/error.rs`).

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
}

pub type Result<T, E = PlazaError> = std::result::Result<T, E>;

impl From<rusqlite::Error> for PlazaError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            if f.code == rusqlite::ErrorCode::ConstraintViolation {
                return PlazaError::Conflict(
                    msg.clone().unwrap_or_else(|| "constraint violation".into()),
                );
            }
        }
        PlazaError::Internal(e.to_string())
    }
}

impl From<r2d2::Error> for PlazaError {
    fn from(e: r2d2::Error) -> Self {
        PlazaError::Unavailable(format!("database pool: {e}"))
    }
}

impl From<actix::MailboxError> for PlazaError {
    fn from(e: actix::MailboxError) -> Self {
        PlazaError::Unavailable(format!("subsystem unavailable: {e}"))
    }
}

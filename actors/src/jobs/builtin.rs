//! Built-in job handlers, scheduled by default (see `scheduler::DEFAULT_SCHEDULE`).

use rusqlite::types::Value as SqlValue;
use serde_json::{json, Value};

use super::JobContext;
use crate::sessions::PruneExpired;
use crate::store::writer::WriteOp;

/// Prunes the change log to its retention (`PLAZA_CHANGELOG_RETAIN` events) and the sync-push
/// dedup table to `PLAZA_OP_RETAIN` entries. The Writer trims both as it commits; this catches
/// up when nothing has been written for a while after the retention was lowered, and keeps the
/// tables bounded should that trimming ever fall behind.
pub fn changelog_compact(ctx: &JobContext, _: &Value) -> Result<Value, String> {
    let (retain, op_retain) = (ctx.services.changelog_retain.max(1), ctx.services.op_retain.max(1));
    ctx.write(vec![
        WriteOp::Internal {
            sql: "DELETE FROM _plaza_changes WHERE seq <= (SELECT seq FROM sqlite_sequence WHERE name = '_plaza_changes') - ?",
            params: vec![SqlValue::Integer(retain)],
        },
        WriteOp::Internal {
            sql: "DELETE FROM _plaza_ops WHERE seq <= (SELECT max(seq) FROM _plaza_ops) - ?",
            params: vec![SqlValue::Integer(op_retain)],
        },
    ])?;
    Ok(json!({"retain": retain, "op_retain": op_retain}))
}

/// Drops expired sessions now: from memory and the database, closing the streams opened with
/// them (the SessionStore's `PruneExpired`; it also does this on its own timer).
pub fn sessions_cleanup(ctx: &JobContext, _: &Value) -> Result<Value, String> {
    let ended = ctx.wait(ctx.services.sessions.send(PruneExpired))?.map_err(|e| format!("session store unavailable: {e}"))?;
    Ok(json!({ "ended": ended }))
}

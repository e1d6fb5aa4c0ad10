//! Background jobs: the `JobQueue` actor owns every pending and running job (persisted in
//! `_plaza_jobs` through the Writer, so jobs survive restarts and a job that was running when
//! the process died runs again), a `JobWorker` pool on a `SyncArbiter` runs handlers, and the
//! `Scheduler` enqueues cron entries.
//!
//! Handlers are Rust code behind [`JobHandler`], registered by name in a [`Registry`], so an
//! app embedding Plaza as a library adds its own next to the built-in ones. A handler runs on a
//! worker thread (never an actor's), behind `catch_unwind`: a panic, an error or a timeout fails
//! only that attempt, which is retried with exponential backoff and jitter until `max_attempts`,
//! then dead-lettered.

pub mod builtin;
pub mod queue;
pub mod scheduler;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::error::{PlazaError, Result};
use crate::model::policy::AuthContext;
use crate::store::writer::{Write, WriteOp, Writer};

pub use queue::JobQueue;
pub use scheduler::Scheduler;
pub use worker::JobWorker;

/// Attempts before a job is dead-lettered, unless the job says otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const MAX_MAX_ATTEMPTS: u32 = 100;
/// How long one attempt may run, unless the job says otherwise.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Longest retry delay, whatever the backoff base and attempt.
pub const MAX_BACKOFF_MS: u64 = 3600 * 1000;
/// Jobs waiting in the queue (pending) before new ones are refused with 503.
pub const MAX_PENDING: usize = 100_000;
/// Largest payload (serialised JSON) and largest result kept.
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
pub const MAX_RESULT_BYTES: usize = 64 * 1024;
/// Longest job name; names are letters, digits and `_ - . :`.
pub const MAX_NAME_LEN: usize = 128;
/// Longest error message kept per attempt.
pub const MAX_ERROR_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Succeeded,
    Dead,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "pending" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "dead" => JobStatus::Dead,
            _ => return None,
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Succeeded | JobStatus::Dead)
    }
}

/// One failed attempt.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AttemptError {
    pub attempt: u32,
    pub error: String,
    /// Milliseconds since the epoch.
    pub at: i64,
}

/// A job as stored. Times are milliseconds since the epoch.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub name: String,
    pub payload: Value,
    pub status: JobStatus,
    pub priority: i64,
    pub run_at: i64,
    pub attempts: u32,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub last_error: Option<String>,
    pub errors: Vec<AttemptError>,
    pub result: Option<Value>,
    /// `admin`, or the user id of the session that enqueued it (`cron` for the Scheduler).
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl Job {
    /// The job as the API shows it (times in RFC 3339).
    pub fn to_json(&self) -> Value {
        let time = |t: Option<i64>| t.map(rfc3339);
        let errors: Vec<Value> =
            self.errors.iter().map(|e| json!({"attempt": e.attempt, "error": e.error, "at": rfc3339(e.at)})).collect();
        json!({
            "id": self.id, "name": self.name, "status": self.status.as_str(), "payload": self.payload,
            "priority": self.priority, "attempts": self.attempts, "max_attempts": self.max_attempts,
            "timeout_ms": self.timeout_ms, "run_at": rfc3339(self.run_at), "last_error": self.last_error,
            "errors": errors, "result": self.result, "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at), "started_at": time(self.started_at),
            "finished_at": time(self.finished_at),
        })
    }

    /// The write that stores this job as it is now.
    pub fn save_op(&self) -> WriteOp {
        let text = |v: &Value| SqlValue::Text(v.to_string());
        let opt_int = |v: Option<i64>| v.map_or(SqlValue::Null, SqlValue::Integer);
        WriteOp::Internal {
            sql: "INSERT OR REPLACE INTO _plaza_jobs (id, name, payload, status, priority, run_at, attempts, max_attempts,
                  timeout_ms, last_error, errors, result, created_by, created_at, updated_at, started_at, finished_at)
                  VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            params: vec![
                SqlValue::Text(self.id.clone()),
                SqlValue::Text(self.name.clone()),
                text(&self.payload),
                SqlValue::Text(self.status.as_str().into()),
                SqlValue::Integer(self.priority),
                SqlValue::Integer(self.run_at),
                SqlValue::Integer(self.attempts.into()),
                SqlValue::Integer(self.max_attempts.into()),
                SqlValue::Integer(self.timeout_ms as i64),
                self.last_error.clone().map_or(SqlValue::Null, SqlValue::Text),
                SqlValue::Text(serde_json::to_string(&self.errors).unwrap_or_else(|_| "[]".into())),
                self.result.as_ref().map_or(SqlValue::Null, text),
                SqlValue::Text(self.created_by.clone()),
                SqlValue::Integer(self.created_at),
                SqlValue::Integer(self.updated_at),
                opt_int(self.started_at),
                opt_int(self.finished_at),
            ],
        }
    }
}

const JOB_COLUMNS: &str = "id, name, payload, status, priority, run_at, attempts, max_attempts, timeout_ms, last_error, \
                           errors, result, created_by, created_at, updated_at, started_at, finished_at";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
    let status: String = r.get(3)?;
    Ok(Job {
        id: r.get(0)?,
        name: r.get(1)?,
        payload: json(r.get(2)?).unwrap_or(Value::Null),
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Pending),
        priority: r.get(4)?,
        run_at: r.get(5)?,
        attempts: r.get(6)?,
        max_attempts: r.get(7)?,
        timeout_ms: r.get::<_, i64>(8)? as u64,
        last_error: r.get(9)?,
        errors: r.get::<_, Option<String>>(10)?.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default(),
        result: json(r.get(11)?),
        created_by: r.get(12)?,
        created_at: r.get(13)?,
        updated_at: r.get(14)?,
        started_at: r.get(15)?,
        finished_at: r.get(16)?,
    })
}

/// One job from the database (a read connection).
pub fn read_job(conn: &Connection, id: &str) -> Result<Option<Job>> {
    Ok(conn.query_row(&format!("SELECT {JOB_COLUMNS} FROM _plaza_jobs WHERE id = ?"), [id], job_from_row).optional()?)
}

/// Jobs from the database, newest first, optionally of one status.
pub fn read_jobs(conn: &Connection, status: Option<JobStatus>, limit: usize) -> Result<Vec<Job>> {
    let (filter, params): (&str, Vec<SqlValue>) = match status {
        Some(s) => ("WHERE status = ?", vec![SqlValue::Text(s.as_str().into())]),
        None => ("", vec![]),
    };
    let mut stmt = conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM _plaza_jobs {filter} ORDER BY created_at DESC, id DESC LIMIT {limit}"))?;
    let jobs = stmt.query_map(rusqlite::params_from_iter(params), job_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(jobs)
}

/// Jobs to resume at start: every pending and running one.
pub fn load_unfinished(conn: &Connection) -> Result<Vec<Job>> {
    let mut stmt = conn.prepare(&format!("SELECT {JOB_COLUMNS} FROM _plaza_jobs WHERE status IN ('pending', 'running')"))?;
    let jobs = stmt.query_map([], job_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(jobs)
}

/// A job name from a client or the manifest.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(PlazaError::Validation(format!("job names are 1 to {MAX_NAME_LEN} letters, digits or _ - . :")))
    }
}

// ---------------------------------------------------------------- handlers

/// What a handler can reach while it runs: which attempt this is, how long it has, and the
/// store (blocking calls are fine: handlers run on worker threads).
pub struct JobContext {
    pub id: String,
    pub name: String,
    pub attempt: u32,
    pub deadline: Instant,
    pub services: Arc<Services>,
}

/// Subsystems and settings handlers may use.
pub struct Services {
    pub writer: Addr<Writer>,
    pub sessions: Addr<crate::sessions::SessionStore>,
    pub changelog_retain: i64,
    pub op_retain: i64,
}

impl JobContext {
    /// Time left before this attempt times out.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Commits `ops` through the Writer (all or nothing) and waits for the commit, at most until
    /// the attempt's deadline. Call only from the handler (a worker thread).
    pub fn write(&self, ops: Vec<WriteOp>) -> std::result::Result<(), String> {
        match self.wait(self.services.writer.send(Write { auth: job_writer(), ops }))? {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("writer unavailable: {e}")),
        }
    }

    /// Runs `future` (typically an actor's `send`) on the actix system and blocks this worker
    /// thread for its answer, at most until the attempt's deadline. Call only from the handler.
    pub fn wait<R: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = R> + Send + 'static,
    ) -> std::result::Result<R, String> {
        let (tx, rx) = std::sync::mpsc::channel();
        actix::System::current().arbiter().spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv_timeout(self.remaining()).map_err(|_| "timed out waiting for the answer".to_string())
    }
}

/// A job handler, registered by name. `run` is called on a worker thread with the job's
/// payload; `Ok(result)` succeeds the attempt (the result is kept on the job when it is small),
/// `Err(message)` fails it. A handler should return by `ctx.deadline`: past it the attempt
/// has already been failed as timed out and the result is ignored.
pub trait JobHandler: Send + Sync + 'static {
    fn run(&self, ctx: &JobContext, payload: &Value) -> std::result::Result<Value, String>;
}

impl<F> JobHandler for F
where
    F: Fn(&JobContext, &Value) -> std::result::Result<Value, String> + Send + Sync + 'static,
{
    fn run(&self, ctx: &JobContext, payload: &Value) -> std::result::Result<Value, String> {
        self(ctx, payload)
    }
}

/// Handlers by job name.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn JobHandler>>,
}

impl Registry {
    /// A registry with the built-in `changelog_compact` and `sessions_cleanup` handlers.
    pub fn with_builtins() -> Registry {
        let mut r = Registry::default();
        r.register("changelog_compact", builtin::changelog_compact);
        r.register("sessions_cleanup", builtin::sessions_cleanup);
        r
    }

    /// Adds (or replaces) the handler for `name`.
    pub fn register(&mut self, name: &str, handler: impl JobHandler) -> &mut Registry {
        self.handlers.insert(name.to_string(), Arc::new(handler));
        self
    }

    /// Adds every handler of `other`, replacing those of the same name.
    pub fn extend(&mut self, other: Registry) -> &mut Registry {
        self.handlers.extend(other.handlers);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn JobHandler>> {
        self.handlers.get(name)
    }
}

/// What the queue reports as jobs move, for metrics.
pub trait JobObserver: Send + Sync + 'static {
    fn queued(&self) {}
    fn started(&self, _queue_latency: Duration) {}
    fn succeeded(&self, _run_time: Duration) {}
    fn failed(&self, _run_time: Duration) {}
    fn dead(&self) {}
    fn depth(&self, _pending: usize, _running: usize) {}
}

/// Observes nothing.
pub struct NoObserver;
impl JobObserver for NoObserver {}

/// Job bookkeeping writes queue in the Writer under a client of their own, so they neither wait
/// behind nor crowd out any caller's writes.
pub fn job_writer() -> AuthContext {
    AuthContext { session: Some("plaza:jobs".into()), ..AuthContext::default() }
}

/// Job settings beyond the registry.
#[derive(Clone)]
pub struct JobSettings {
    pub workers: usize,
    pub backoff_ms: u64,
    pub registry: Registry,
    pub observer: Arc<dyn JobObserver>,
}

//! The only SQLite write connection, and group commit in front of it.
//!
//! `SqliteWriter` runs on a one-thread `SyncArbiter` and owns the write connection. `Writer`
//! (an ordinary actor) queues each caller's unit of ops; whenever the connection is idle it
//! hands over a group of queued units, committed in one transaction, so one caller's failure
//! rolls back only its own ops: a unit of several ops runs in a savepoint, a lone op (and each
//! op of a batch) on its own, since SQLite undoes a failed statement itself (see `alone`).
//! Callers are answered after the commit, and the change-log rows are written in that same
//! transaction.
//!
//! The queue is fair: each client (session, user, or the admin) has its own queue and groups
//! take units from the clients in turn, with a bound on the ops per group. A client flooding
//! large batches therefore adds at most one unit per group ahead of anyone else's write, and
//! when it has too much queued only it is told `OVERLOADED`.

use std::sync::Arc;

use actix::prelude::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::changelog::{Append, ChangeLog, LogBounds};
use crate::error::{PlazaError, Result};
use crate::model::change::{Change, ChangeKind};
use crate::model::manifest::{AppManifest, EntityDef};
use crate::model::policy::{AuthContext, Policies};
use crate::model::rows::{self, NewRow, Row};
use crate::store::queue::{FairQueue, Full, Limits};
use crate::store::checkpoint::Checkpointer;
use crate::store::reader::{read_row, DataVersion};
use crate::store::search::PendingIndex;
use crate::store::{open_write_connection, StoreOptions};

/// Most units folded into one transaction; bounds commit latency under load.
pub const MAX_GROUP: usize = 1024;
/// Most ops in one transaction (a single unit larger than this still commits alone), so one
/// client's big batches cannot make everyone's commit slow.
pub const MAX_GROUP_OPS: usize = 256;
/// Groups at the connection at once. The second is handed over only once the first has applied
/// its units and is committing: it is then waiting when that commit ends, so the connection
/// does not idle on a round trip to this actor, and it holds every unit that arrived while the
/// first was applied. (Handed over as soon as one unit arrived, the second group was small
/// and so was each after it, each paying a commit, and with a search index an FTS5 flush, for
/// a few rows: see docs/PERFORMANCE.md.)
pub const PIPELINE_DEPTH: usize = 2;
/// Ops waiting for the connection, in all, before new writes are refused (503 `OVERLOADED`).
pub const MAX_QUEUED_OPS: usize = 200_000;
/// Ops one client may have waiting; past it only that client is refused.
pub const MAX_QUEUED_OPS_PER_CLIENT: usize = 20_000;
/// What an overloaded caller is told to wait before retrying.
pub const OVERLOADED_RETRY_SECS: u64 = 1;
/// Quiet time after which the Writer spends the connection's idle moments on maintenance
/// (merging full-text index segments, which then stays off the commit path).
pub const IDLE_BEFORE_MAINTENANCE: std::time::Duration = std::time::Duration::from_millis(20);
#[derive(Debug, Clone)]
pub enum WriteOp {
    Insert { entity: String, row: NewRow },
    Update { entity: String, id: String, values: Vec<(String, SqlValue)> },
    Delete { entity: String, id: String },
    /// An update applied only while `field` still holds `expect` (unlink: clear a key only if it
    /// still points where the caller says); otherwise `NotFound(mismatch)` and nothing changes.
    UpdateIf { entity: String, id: String, expect: (String, SqlValue), values: Vec<(String, SqlValue)>, mismatch: String },
    /// Plaza's own bookkeeping (sessions, dedup tables): no policy, no change event.
    Internal { sql: &'static str, params: Vec<SqlValue> },
    /// First op of a deduplicated unit: if `key` was applied before, the unit stops with
    /// `PlazaError::Duplicate(first result)` and writes nothing.
    SkipIfApplied { key: String },
    /// Last op of a deduplicated unit: remembers the unit's changes under `key`.
    RememberApplied { key: String },
}

impl WriteOp {
    /// A client's `insert`/`update`/`delete` of an `entity` row, validated: `id` may be omitted
    /// for an insert (the server picks one) and is required otherwise. Batch, transact and
    /// sync push all build their writes here.
    pub fn from_request(def: &EntityDef, kind: Option<&str>, id: Option<&serde_json::Value>, data: &serde_json::Value) -> Result<WriteOp> {
        let entity = def.name.clone();
        let required_id = || {
            id.ok_or_else(|| PlazaError::Validation(format!("{} needs an \"id\"", kind.unwrap_or("op"))))
                .and_then(rows::validate_id)
        };
        Ok(match kind {
            Some("insert") => {
                let mut data = data.clone();
                if let (Some(obj), Some(id)) = (data.as_object_mut(), id) {
                    obj.insert("id".into(), id.clone());
                }
                WriteOp::Insert { entity, row: rows::validate_insert(def, &data, false)? }
            }
            Some("update") => WriteOp::Update { entity, id: required_id()?, values: rows::validate_patch(def, data)? },
            Some("delete") => WriteOp::Delete { entity, id: required_id()? },
            other => {
                return Err(PlazaError::Validation(format!(
                    "the operation must be insert, update or delete, got {}",
                    other.map_or("nothing".to_string(), |o| format!("'{o}'"))
                )))
            }
        })
    }
}

/// One caller's ops: all commit, or none do. Every entity op is checked against the policies
/// for `auth` inside the transaction, seeing the row before and after.
#[derive(Message)]
#[rtype(result = "Result<Vec<Arc<Change>>>")]
pub struct Write {
    pub auth: AuthContext,
    pub ops: Vec<WriteOp>,
}

/// One caller's independent ops (a batch): each commits or fails on its own, in one group.
/// Answers one result per op (`None` for bookkeeping ops).
#[derive(Message)]
#[rtype(result = "Result<Vec<Result<Option<Arc<Change>>>>>")]
pub struct WriteEach {
    pub auth: AuthContext,
    pub ops: Vec<WriteOp>,
}

/// What the connection commits for one caller.
pub struct Unit {
    auth: AuthContext,
    ops: Vec<WriteOp>,
    atomic: bool,
}

/// A unit's outcome: the whole unit's for an atomic one, else one per op.
pub enum Outcome {
    All(Result<Vec<Arc<Change>>>),
    Each(Vec<Result<Option<Arc<Change>>>>),
}

impl Outcome {
    fn changes(&self) -> Box<dyn Iterator<Item = &Arc<Change>> + '_> {
        match self {
            Outcome::All(r) => Box::new(r.iter().flatten()),
            Outcome::Each(rs) => Box::new(rs.iter().flatten().flatten()),
        }
    }

    fn failed(e: PlazaError, atomic: bool, ops: usize) -> Outcome {
        if atomic {
            Outcome::All(Err(e))
        } else {
            Outcome::Each(vec![Err(e); ops])
        }
    }
}

type Reply = oneshot::Sender<Outcome>;

struct Queued {
    unit: Unit,
    reply: Reply,
}

/// Whose queue a unit waits in.
fn client_key(auth: &AuthContext) -> Arc<str> {
    match (&auth.session, &auth.user_id) {
        _ if auth.admin => "admin".into(),
        (Some(session), _) => format!("session:{session}").into(),
        (None, Some(user)) => format!("user:{user}").into(),
        (None, None) => "anonymous".into(),
    }
}

pub struct Writer {
    worker: Addr<SqliteWriter>,
    changelog: Addr<ChangeLog>,
    queue: FairQueue<Queued>,
    /// Groups handed to the connection and not yet answered, oldest first, by number.
    in_flight: std::collections::VecDeque<u64>,
    /// The number of the next group.
    next_group: u64,
    /// The last group that told it is committing.
    committing: Option<u64>,
    /// A maintenance step is scheduled or running.
    maintaining: bool,
}

impl Writer {
    pub fn new(worker: Addr<SqliteWriter>, changelog: Addr<ChangeLog>) -> Self {
        let limits = Limits { group_units: MAX_GROUP, group_ops: MAX_GROUP_OPS, queued_ops: MAX_QUEUED_OPS, queued_ops_per_client: MAX_QUEUED_OPS_PER_CLIENT };
        Writer {
            worker,
            changelog,
            queue: FairQueue::new(limits),
            in_flight: Default::default(),
            next_group: 0,
            committing: None,
            maintaining: false,
        }
    }

    fn enqueue(&mut self, unit: Unit, ctx: &mut Context<Self>) -> oneshot::Receiver<Outcome> {
        let (reply, rx) = oneshot::channel();
        let (key, ops, atomic, count) = (client_key(&unit.auth), unit.ops.len().max(1), unit.atomic, unit.ops.len());
        if let Err(Full(refused)) = self.queue.push(key, ops, Queued { unit, reply }) {
            let overloaded = PlazaError::Overloaded { retry_after_secs: OVERLOADED_RETRY_SECS };
            let _ = refused.reply.send(Outcome::failed(overloaded, atomic, count));
        } else {
            self.flush(ctx);
        }
        rx
    }

    /// Whether the connection should be handed another group now: when it has none, or when
    /// the one it has is committing.
    fn may_hand_over(&self) -> bool {
        match self.in_flight.front() {
            None => true,
            Some(&oldest) => self.in_flight.len() < PIPELINE_DEPTH && self.committing == Some(oldest),
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if !self.may_hand_over() {
            return;
        }
        let group = self.queue.next_group();
        if group.is_empty() {
            if self.in_flight.is_empty() {
                self.when_idle(ctx);
            }
            return;
        }
        let number = self.next_group;
        self.next_group += 1;
        self.in_flight.push_back(number);
        let (units, replies): (Vec<_>, Vec<_>) = group.into_iter().map(|q| (q.unit, q.reply)).unzip();
        let shapes: Vec<(bool, usize)> = units.iter().map(|u| (u.atomic, u.ops.len())).collect();
        let (committing, started) = oneshot::channel();
        ctx.spawn(started.into_actor(self).map(move |started, act, ctx| {
            if started.is_ok() {
                act.committing = Some(number);
                act.flush(ctx);
            }
        }));
        self.worker
            .send(CommitGroup { units, committing })
            .into_actor(self)
            .map(move |outcome, act, ctx| {
                act.in_flight.retain(|&n| n != number);
                match outcome {
                    Ok(Ok(group)) => {
                        let committed: Vec<Arc<Change>> = group.outcomes.iter().flat_map(Outcome::changes).cloned().collect();
                        // Callers hear back only once the ChangeLog holds their events, so a pull
                        // or resume right after an acknowledged write sees it (never a 410 for a
                        // seq the caller was just given). The next group commits meanwhile.
                        let logged = act.changelog.send(Append { changes: committed, bounds: group.bounds });
                        actix::spawn(async move {
                            let _ = logged.await;
                            for (reply, outcome) in replies.into_iter().zip(group.outcomes) {
                                let _ = reply.send(outcome);
                            }
                        });
                    }
                    Ok(Err(e)) => answer_failed(replies, &shapes, e),
                    Err(e) => answer_failed(replies, &shapes, e.into()),
                }
                act.flush(ctx);
            })
            .spawn(ctx);
        self.flush(ctx);
    }
}

impl Writer {
    /// After `IDLE_BEFORE_MAINTENANCE` with nothing to commit, one bounded maintenance step;
    /// again while it reports more work and nothing else arrived.
    fn when_idle(&mut self, ctx: &mut Context<Self>) {
        if self.maintaining {
            return;
        }
        self.maintaining = true;
        ctx.run_later(IDLE_BEFORE_MAINTENANCE, |act, ctx| {
            if !act.in_flight.is_empty() || !act.queue.is_empty() {
                act.maintaining = false;
                return;
            }
            act.worker
                .send(Maintain)
                .into_actor(act)
                .map(|outcome, act, ctx| {
                    act.maintaining = false;
                    match outcome {
                        Ok(Ok(true)) if act.in_flight.is_empty() && act.queue.is_empty() => act.when_idle(ctx),
                        Ok(Err(e)) => tracing::warn!(error = %e, "writer maintenance failed"),
                        _ => {}
                    }
                })
                .spawn(ctx);
        });
    }
}

impl Actor for Writer {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        // Queue bounds are checked per client above; the mailbox only needs to not get in the way.
        ctx.set_mailbox_capacity(MAX_QUEUED_OPS);
    }
}

/// The whole group failed (the connection, not a unit): every caller hears why.
fn answer_failed(replies: Vec<Reply>, shapes: &[(bool, usize)], e: PlazaError) {
    for (reply, &(atomic, ops)) in replies.into_iter().zip(shapes) {
        let _ = reply.send(Outcome::failed(e.clone(), atomic, ops));
    }
}

/// How a storage failure of a write is reported to the client (SQLite's text stays in the log).
const WRITE_FAILED: &str = "the database could not complete the write";

fn writer_stopped() -> PlazaError {
    PlazaError::Unavailable("writer stopped".into())
}

impl Handler<Write> for Writer {
    type Result = ResponseFuture<Result<Vec<Arc<Change>>>>;
    fn handle(&mut self, msg: Write, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(Unit { auth: msg.auth, ops: msg.ops, atomic: true }, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Outcome::All(result)) => result.map_err(|e| e.failed_while(WRITE_FAILED)),
                Ok(Outcome::Each(_)) | Err(_) => Err(writer_stopped()),
            }
        })
    }
}

impl Handler<WriteEach> for Writer {
    type Result = ResponseFuture<Result<Vec<Result<Option<Arc<Change>>>>>>;
    fn handle(&mut self, msg: WriteEach, ctx: &mut Context<Self>) -> Self::Result {
        let rx = self.enqueue(Unit { auth: msg.auth, ops: msg.ops, atomic: false }, ctx);
        Box::pin(async move {
            match rx.await {
                Ok(Outcome::Each(results)) => {
                    Ok(results.into_iter().map(|r| r.map_err(|e| e.failed_while(WRITE_FAILED))).collect())
                }
                Ok(Outcome::All(_)) | Err(_) => Err(writer_stopped()),
            }
        })
    }
}

/// How much waits for the database: ops queued and groups handed to the connection but not yet
/// committed (`/metrics` `writer`, Studio's write-queue chart).
#[derive(Debug, Clone, Copy, serde::Serialize, MessageResponse)]
pub struct WriterStats {
    pub queued_ops: usize,
    pub in_flight_groups: usize,
}

#[derive(Message)]
#[rtype(result = "WriterStats")]
pub struct Stats;

impl Handler<Stats> for Writer {
    type Result = WriterStats;
    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> WriterStats {
        WriterStats { queued_ops: self.queue.queued_ops(), in_flight_groups: self.in_flight.len() }
    }
}

// ---------------------------------------------------------------- the connection

pub struct SqliteWriter {
    /// `Err` only if the connection could not be reopened; every commit then fails cleanly.
    conn: std::result::Result<Connection, String>,
    manifest: Arc<AppManifest>,
    policies: Arc<Policies>,
    bounds: LogBounds,
    retain: i64,
    op_retain: i64,
    /// Bumped after every commit (readers' caches are keyed by it).
    version: DataVersion,
    /// Checkpoints the WAL on its own thread while this connection commits.
    _checkpointer: Option<Checkpointer>,
}

#[derive(Message)]
#[rtype(result = "Result<GroupCommitted>")]
pub struct CommitGroup {
    pub units: Vec<Unit>,
    /// Told once the units are applied and the transaction is about to commit.
    pub committing: oneshot::Sender<()>,
}

pub struct GroupCommitted {
    pub outcomes: Vec<Outcome>,
    pub bounds: LogBounds,
}

impl Actor for SqliteWriter {
    type Context = SyncContext<Self>;
}

impl SqliteWriter {
    /// Opens the write connection. Called by the SyncArbiter's factory, which cannot fail, so a
    /// failure is kept and reported on every commit instead.
    pub fn open(options: &StoreOptions, manifest: Arc<AppManifest>, policies: Arc<Policies>, version: DataVersion) -> Self {
        let opened = open_write_connection(&options.path, options.durability)
            .and_then(|conn| read_bounds(&conn).map(|bounds| (conn, bounds)));
        let (conn, bounds) = match opened {
            Ok((conn, bounds)) => (Ok(conn), bounds),
            Err(e) => {
                tracing::error!(error = %e, "cannot open the write connection");
                (Err(e.to_string()), LogBounds { oldest_seq: 1, last_seq: 0 })
            }
        };
        let checkpointer = match Checkpointer::start(&options.path, options.durability) {
            Ok(c) => c,
            Err(e) => {
                // Back to SQLite's own checkpoints in the commit path rather than a growing WAL.
                tracing::error!(error = %e, "no checkpoint thread; checkpointing on commit");
                if let Ok(conn) = &conn {
                    let _ = conn.execute_batch("PRAGMA wal_autocheckpoint=1000;");
                }
                None
            }
        };
        SqliteWriter {
            _checkpointer: checkpointer,
            conn,
            manifest,
            policies,
            bounds,
            retain: options.changelog_retain.max(1),
            op_retain: options.op_retain.max(1),
            version,
        }
    }
}

/// The log position on disk: the last seq ever assigned, and the oldest still retained.
pub fn read_bounds(conn: &Connection) -> Result<LogBounds> {
    let last_seq: i64 = conn
        .query_row("SELECT seq FROM sqlite_sequence WHERE name='_plaza_changes'", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let oldest: Option<i64> = conn.query_row("SELECT min(seq) FROM _plaza_changes", [], |r| r.get(0))?;
    Ok(LogBounds { oldest_seq: oldest.unwrap_or(last_seq + 1), last_seq })
}

impl Handler<CommitGroup> for SqliteWriter {
    type Result = Result<GroupCommitted>;
    fn handle(&mut self, msg: CommitGroup, _: &mut SyncContext<Self>) -> Self::Result {
        let (manifest, policies) = (self.manifest.clone(), self.policies.clone());
        let conn = self.conn.as_mut().map_err(|e| {
            tracing::error!(error = %e, "no database connection for writing");
            PlazaError::Unavailable("the database is unreachable".into())
        })?;
        let tx = conn.transaction()?;
        let now = now_rfc3339();
        let CommitGroup { units, committing } = msg;
        let mut outcomes = Vec::with_capacity(units.len());
        let mut remembered = false;
        let mut index = PendingIndex::default();
        for unit in units {
            let ctx = OpContext { manifest: &manifest, policies: &policies, auth: &unit.auth, now: &now };
            remembered |= unit.ops.iter().any(|op| matches!(op, WriteOp::RememberApplied { .. }));
            let outcome = if unit.atomic && unit.ops.len() > 1 {
                Outcome::All(in_savepoint(&tx, &mut index, |done, index| {
                    for op in unit.ops {
                        if let Some(change) = apply(&tx, &ctx, op, done, index)? {
                            done.push(change);
                        }
                    }
                    Ok(())
                })?
                .map(|done| done.into_iter().map(Arc::new).collect()))
            } else if unit.atomic {
                let op = unit.ops.into_iter().next();
                let applied = op.map_or(Ok(Ok(None)), |op| alone(&tx, &mut index, |index| apply(&tx, &ctx, op, &[], index)))?;
                Outcome::All(applied.map(|change| change.map(Arc::new).into_iter().collect()))
            } else {
                let mut each = Vec::with_capacity(unit.ops.len());
                for op in unit.ops {
                    let applied = alone(&tx, &mut index, |index| apply(&tx, &ctx, op, &[], index))?;
                    each.push(applied.map(|change| change.map(Arc::new)));
                }
                Outcome::Each(each)
            };
            outcomes.push(outcome);
        }
        // After every savepoint is released, so FTS5 flushes its terms once for the group.
        index.write(&tx)?;
        // The Writer may hand over the next group now: it waits while this one commits. Only
        // now, after the index's flush: a group that indexed rows spends most of its time
        // there, and the next group then takes in everything that arrived meanwhile.
        let _ = committing.send(());
        let last_seq = outcomes.iter().flat_map(Outcome::changes).map(|c| c.seq).fold(self.bounds.last_seq, i64::max);
        let cutoff = last_seq - self.retain;
        if cutoff >= self.bounds.oldest_seq {
            tx.execute("DELETE FROM _plaza_changes WHERE seq <= ?", [cutoff])?;
        }
        if remembered {
            tx.execute(
                "DELETE FROM _plaza_ops WHERE seq <= (SELECT max(seq) FROM _plaza_ops) - ?",
                [self.op_retain],
            )?;
        }
        tx.commit()?;
        self.version.bump();
        self.bounds = LogBounds { oldest_seq: self.bounds.oldest_seq.max(cutoff + 1), last_seq };
        Ok(GroupCommitted { outcomes, bounds: self.bounds })
    }
}

/// One bounded step of maintenance while the Writer is idle; answers whether more is left.
#[derive(Message)]
#[rtype(result = "Result<bool>")]
pub struct Maintain;

impl Handler<Maintain> for SqliteWriter {
    type Result = Result<bool>;
    fn handle(&mut self, _: Maintain, _: &mut SyncContext<Self>) -> Self::Result {
        let conn = self.conn.as_mut().map_err(|e| PlazaError::Unavailable(e.clone()))?;
        super::search::merge_step(conn, &self.manifest)
    }
}

/// Runs `body` inside a savepoint, rolled back if it fails: the outer `Result` is the
/// connection's own failure (the whole group fails), the inner one the unit's. The unit's
/// search index writes join the group's (`index`) only when it succeeds.
fn in_savepoint(
    tx: &Connection,
    index: &mut PendingIndex,
    body: impl FnOnce(&mut Vec<Change>, &mut PendingIndex) -> Result<()>,
) -> Result<Result<Vec<Change>>> {
    // Cached statements: a savepoint per unit costs no SQL parsing.
    tx.prepare_cached("SAVEPOINT unit")?.execute([])?;
    let (mut done, mut unit_index) = (Vec::new(), PendingIndex::default());
    let outcome = body(&mut done, &mut unit_index);
    match outcome {
        Ok(()) => index.append(unit_index),
        Err(_) => {
            tx.prepare_cached("ROLLBACK TO unit")?.execute([])?;
        }
    }
    tx.prepare_cached("RELEASE unit")?.execute([])?;
    Ok(outcome.map(|()| done))
}

/// Runs one op without a savepoint. A statement that fails changes nothing (SQLite undoes it),
/// so an op that fails before any of its statements completed leaves nothing behind and fails
/// alone. An op that fails after one did (a storage error between the row and its change-log
/// entry) cannot be undone on its own: that is the connection's failure, and the whole group's
/// transaction is rolled back. A savepoint per op cost its SAVEPOINT/RELEASE and a copy of every
/// page it touched into the sub-journal: 13% of the Writer thread on single-row inserts.
fn alone(
    tx: &Connection,
    index: &mut PendingIndex,
    op: impl FnOnce(&mut PendingIndex) -> Result<Option<Change>>,
) -> Result<Result<Option<Change>>> {
    let before = tx.total_changes();
    let mut op_index = PendingIndex::default();
    match op(&mut op_index) {
        Ok(change) => {
            index.append(op_index);
            Ok(Ok(change))
        }
        Err(e) if tx.total_changes() == before => Ok(Err(e)),
        Err(e) => {
            tracing::error!(error = %e, "a write failed after part of it was applied; the whole commit group is rolled back");
            Err(e)
        }
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn entity_def<'m>(manifest: &'m AppManifest, name: &str) -> Result<&'m crate::model::manifest::EntityDef> {
    manifest.entity(name).ok_or_else(|| PlazaError::UnknownEntity(name.to_string()))
}

struct OpContext<'a> {
    manifest: &'a AppManifest,
    policies: &'a Policies,
    auth: &'a AuthContext,
    now: &'a str,
}

/// Applies one op after the unit's earlier ones (`done`), its search index writes queued in
/// `index`; `None` for bookkeeping ops, which leave no change event.
fn apply(conn: &Connection, ctx: &OpContext<'_>, op: WriteOp, done: &[Change], index: &mut PendingIndex) -> Result<Option<Change>> {
    let (manifest, now) = (ctx.manifest, ctx.now);
    let (entity, row_id, kind, data, prior) = match op {
        WriteOp::Internal { sql, params } => {
            conn.prepare_cached(sql)?.execute(params_from_iter(params))?;
            return Ok(None);
        }
        WriteOp::SkipIfApplied { key } => {
            skip_if_applied(conn, &key)?;
            return Ok(None);
        }
        WriteOp::RememberApplied { key } => {
            remember(conn, &key, done)?;
            return Ok(None);
        }
        WriteOp::Insert { entity, row } => {
            let def = entity_def(manifest, &entity)?;
            let id = row.id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let created = row.created_at.clone().unwrap_or_else(|| now.to_string());
            let updated = row.updated_at.clone().unwrap_or_else(|| created.clone());
            let mut data = Row::new();
            data.insert("id".into(), id.clone().into());
            data.insert("createdAt".into(), created.clone().into());
            data.insert("updatedAt".into(), updated.clone().into());
            for f in &def.fields {
                let v = row.values.iter().find(|(n, _)| *n == f.name).map(|(_, v)| v);
                data.insert(f.name.clone(), v.map_or(serde_json::Value::Null, |v| rows::sql_to_row_value(def, &f.name, v)));
            }
            ctx.policies.check_write(&entity, ctx.auth, None, Some(&data))?;
            let mut cols = vec!["\"id\"".to_string(), "\"createdAt\"".into(), "\"updatedAt\"".into()];
            let mut vals = vec![SqlValue::Text(id.clone()), SqlValue::Text(created), SqlValue::Text(updated)];
            for (name, v) in row.values {
                cols.push(format!("\"{name}\""));
                vals.push(v);
            }
            let sql = format!(
                "INSERT INTO \"{entity}\" ({}) VALUES ({})",
                cols.join(","),
                vec!["?"; cols.len()].join(",")
            );
            conn.prepare_cached(&sql)?.execute(params_from_iter(vals)).map_err(|e| match PlazaError::from(e) {
                PlazaError::Conflict(m) if m.contains(&format!("{entity}.id")) => {
                    PlazaError::Conflict(format!("{entity} '{id}' already exists"))
                }
                other => other,
            })?;
            super::search::on_insert(index, def, conn.last_insert_rowid(), &data);
            (entity, id, ChangeKind::Insert, Some(data), None)
        }
        WriteOp::UpdateIf { entity, id, expect: (field, expected), values, mismatch } => {
            let def = entity_def(manifest, &entity)?;
            let old = read_row(conn, def, &id)?.ok_or_else(|| not_found(&entity, &id))?;
            let current = old.get(&field).map_or(SqlValue::Null, rows::json_to_sql);
            if current != expected || expected == SqlValue::Null {
                return Err(PlazaError::NotFound(mismatch));
            }
            return apply(conn, ctx, WriteOp::Update { entity, id, values }, done, index);
        }
        WriteOp::Update { entity, id, values } => {
            let def = entity_def(manifest, &entity)?;
            let old = read_row(conn, def, &id)?.ok_or_else(|| not_found(&entity, &id))?;
            let mut new = old.clone();
            for (name, v) in &values {
                new.insert(name.clone(), rows::sql_to_row_value(def, name, v));
            }
            new.insert("updatedAt".into(), now.into());
            ctx.policies.check_write(&entity, ctx.auth, Some(&old), Some(&new))?;
            let mut sets = vec!["\"updatedAt\" = ?".to_string()];
            let mut vals = vec![SqlValue::Text(now.to_string())];
            for (name, v) in values {
                sets.push(format!("\"{name}\" = ?"));
                vals.push(v);
            }
            vals.push(SqlValue::Text(id.clone()));
            let sql = format!("UPDATE \"{entity}\" SET {} WHERE id = ?", sets.join(", "));
            conn.prepare_cached(&sql)?.execute(params_from_iter(vals))?;
            super::search::on_update(conn, index, def, &id, &old, &new)?;
            (entity, id, ChangeKind::Update, Some(new), None)
        }
        WriteOp::Delete { entity, id } => {
            let def = entity_def(manifest, &entity)?;
            let old = read_row(conn, def, &id)?.ok_or_else(|| not_found(&entity, &id))?;
            ctx.policies.check_write(&entity, ctx.auth, Some(&old), None)?;
            let rid = super::search::rowid_of(conn, def, &id)?;
            conn.prepare_cached(&format!("DELETE FROM \"{entity}\" WHERE id = ?"))?.execute([&id])?;
            super::search::on_delete(index, def, rid, &old);
            (entity, id, ChangeKind::Delete, None, Some(old))
        }
    };
    // A delete stores the row it removed, so read policies can be checked on the event later.
    let stored = data.as_ref().or(prior.as_ref());
    // Serialised from the row as it is (no copy into a `Value` first).
    let payload = stored.map(serde_json::to_string).transpose().map_err(|e| PlazaError::Internal(e.to_string()))?;
    conn.prepare_cached("INSERT INTO _plaza_changes (entity, row_id, kind, data, ts) VALUES (?,?,?,?,?)")?
        .execute(rusqlite::params![entity, row_id, kind.as_str(), payload, now])?;
    Ok(Some(Change { seq: conn.last_insert_rowid(), entity, row_id, kind, data, timestamp: now.to_string(), prior }))
}

fn skip_if_applied(conn: &Connection, key: &str) -> Result<()> {
    let first: Option<String> =
        conn.prepare_cached("SELECT result FROM _plaza_ops WHERE op_key = ?")?.query_row([key], |r| r.get(0)).optional()?;
    match first {
        Some(result) => Err(PlazaError::Duplicate(result)),
        None => Ok(()),
    }
}

fn remember(conn: &Connection, key: &str, changes: &[Change]) -> Result<()> {
    let result = serde_json::to_string(changes).map_err(|e| PlazaError::Internal(e.to_string()))?;
    conn.prepare_cached("INSERT INTO _plaza_ops (op_key, result) VALUES (?, ?)")?.execute([key, &result])?;
    Ok(())
}

fn not_found(entity: &str, id: &str) -> PlazaError {
    PlazaError::NotFound(format!("{entity} '{id}' not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_op_fails_alone_only_when_it_left_nothing_behind() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)").unwrap();
        let tx = conn.transaction().unwrap();
        let mut index = PendingIndex::default();
        let insert = |v: &str| tx.execute("INSERT INTO t (v) VALUES (?)", [v]).map(|_| ()).map_err(PlazaError::from);
        assert!(matches!(alone(&tx, &mut index, |_| insert("a").map(|()| None)), Ok(Ok(None))));
        // The statement fails and SQLite undoes it: the op fails on its own, the group goes on.
        assert!(matches!(alone(&tx, &mut index, |_| insert("a").map(|()| None)), Ok(Err(_))));
        // One statement completed before the failure: only rolling the whole group back undoes it.
        assert!(alone(&tx, &mut index, |_| insert("b").and_then(|()| insert("a")).map(|()| None)).is_err());
    }
}

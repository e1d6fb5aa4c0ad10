//! Reads, on a pool of read-only connections. Every method blocks: callers run them on a
//! blocking thread (the read threads), never on an actor's thread — except [`Reader::get`], a
//! primary-key lookup measured in microseconds, which HTTP workers run themselves.

use std::sync::Arc;

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, OptionalExtension};
use serde_json::json;

use crate::model::change::{Change, ChangeKind};
use crate::error::{PlazaError, Result};
use crate::model::manifest::{AppManifest, EntityDef, Statement};
use crate::model::policy::{Action, AuthContext, Policies};
use crate::model::query::{self, Filter, Query};
use crate::model::rows::{self, Row};
use crate::store::point::PointReads;

pub type ReadPool = r2d2::Pool<SqliteConnectionManager>;

/// Every method that returns rows takes the caller's `AuthContext` and applies the entity's
/// read policy itself (in SQL for lists), so no read path can skip it.
#[derive(Clone)]
pub struct Reader {
    pub(super) pool: ReadPool,
    /// Lookups by primary key, on the calling thread's own connection.
    point: PointReads,
    manifest: Arc<AppManifest>,
    policies: Arc<Policies>,
    pub(super) version: DataVersion,
}

/// Counts the Writer's commits. A reader that sees the same count before two reads knows
/// nothing was committed between them: what the search cache is keyed by. The Writer bumps it
/// right after each commit, before anyone is answered, so a caller's own acknowledged write is
/// always seen.
#[derive(Debug, Clone, Default)]
pub struct DataVersion(Arc<std::sync::atomic::AtomicU64>);

impl DataVersion {
    pub fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn bump(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

impl Reader {
    pub fn new(pool: ReadPool, point: PointReads, manifest: Arc<AppManifest>, policies: Arc<Policies>) -> Self {
        Reader { pool, point, manifest, policies, version: DataVersion::default() }
    }

    /// The commit count the Writer must bump (see [`DataVersion`]).
    pub fn data_version(&self) -> DataVersion {
        self.version.clone()
    }

    pub fn manifest(&self) -> &Arc<AppManifest> {
        &self.manifest
    }

    pub fn policies(&self) -> &Arc<Policies> {
        &self.policies
    }

    /// `filter` AND the read policy for `auth`.
    pub(super) fn readable(&self, entity: &str, auth: &AuthContext, filter: &Filter) -> Filter {
        match self.policies.cond(entity, Action::Read, auth, None).as_filter() {
            Some(policy) => Filter::All(vec![filter.clone(), policy]),
            None => filter.clone(),
        }
    }

    /// Runs `f` on a read connection, for Plaza's own tables (jobs, files, shard snapshots).
    pub fn with_conn<R>(&self, f: impl FnOnce(&rusqlite::Connection) -> Result<R>) -> Result<R> {
        let conn = self.pool.get()?;
        f(&conn)
    }

    pub fn entity(&self, name: &str) -> Result<&EntityDef> {
        self.manifest.entity(name).ok_or_else(|| PlazaError::UnknownEntity(name.to_string()))
    }

    /// A row the caller may read; `None` both when it is missing and when the policy hides it,
    /// so ids cannot be probed. A primary-key lookup: it runs on the calling thread (an HTTP
    /// worker may call it directly, see [`PointReads`]).
    pub fn get(&self, auth: &AuthContext, entity: &str, id: &str) -> Result<Option<Row>> {
        let def = self.entity(entity)?;
        let row = self.point.with_conn(self.version.get(), |conn| read_row(conn, def, id))?;
        Ok(row.filter(|r| self.policies.cond(entity, Action::Read, auth, None).allows(r)))
    }

    /// Rows matching `q`, ordered, with `q`'s limit (or `default_limit`) and offset.
    pub fn query(&self, auth: &AuthContext, entity: &str, q: &Query, default_limit: i64) -> Result<Vec<Row>> {
        let def = self.entity(entity)?;
        let mut params = Vec::new();
        let where_sql = query::to_sql_where(&self.readable(entity, auth, &q.filter), &mut params);
        params.push(SqlValue::Integer(q.limit_or(default_limit)));
        params.push(SqlValue::Integer(q.offset.unwrap_or(0)));
        let sql = format!(
            "SELECT {} FROM \"{}\" WHERE {where_sql} {} LIMIT ? OFFSET ?",
            rows::select_list(def),
            def.name,
            query::to_sql_order(&q.order)
        );
        self.rows(def, &sql, params)
    }

    /// Keyset page in id order: rows after `after` matching `filter`, and whether more follow.
    pub fn page_after(
        &self,
        auth: &AuthContext,
        entity: &str,
        filter: &Filter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<Row>, bool)> {
        let def = self.entity(entity)?;
        let mut params = Vec::new();
        let where_sql = query::to_sql_where(&self.readable(entity, auth, filter), &mut params);
        params.push(SqlValue::Text(after.unwrap_or("").to_string()));
        params.push(SqlValue::Integer(limit + 1));
        let sql = format!(
            "SELECT {} FROM \"{}\" WHERE ({where_sql}) AND id > ? ORDER BY id LIMIT ?",
            rows::select_list(def),
            def.name
        );
        let mut page = self.rows(def, &sql, params)?;
        let has_more = page.len() as i64 > limit;
        page.truncate(limit as usize);
        Ok((page, has_more))
    }

    fn rows(&self, def: &EntityDef, sql: &str, params: Vec<SqlValue>) -> Result<Vec<Row>> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params_from_iter(params), |r| rows::from_sql_row(def, r))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Persistent change log after `since`: at most `limit` events (all of them, whoever may
    /// read them: filter with `Policies::can_see`) and whether more follow.
    pub fn changes_since(&self, since: i64, limit: usize) -> Result<(Vec<Change>, bool)> {
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(
            "SELECT seq, entity, row_id, kind, data, ts FROM _plaza_changes WHERE seq > ? ORDER BY seq LIMIT ?",
        )?;
        let mut changes = stmt
            .query_map(rusqlite::params![since, limit as i64 + 1], |r| {
                let kind = ChangeKind::parse(&r.get::<_, String>(3)?).unwrap_or(ChangeKind::Update);
                let row: Option<Row> = r.get::<_, Option<String>>(4)?.and_then(|d| serde_json::from_str(&d).ok());
                let (data, prior) = if kind == ChangeKind::Delete { (None, row) } else { (row, None) };
                Ok(Change { seq: r.get(0)?, entity: r.get(1)?, row_id: r.get(2)?, kind, data, timestamp: r.get(5)?, prior })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let has_more = changes.len() > limit;
        changes.truncate(limit);
        Ok((changes, has_more))
    }

    /// Every row of every entity as NDJSON lines `{"entity","data"}`, in one read transaction,
    /// handed to `sink` in chunks of about `chunk_bytes`; `sink` answers false to stop (the
    /// client went away). Returns the row count.
    pub fn export(&self, chunk_bytes: usize, sink: impl FnMut(Vec<u8>) -> bool) -> Result<usize> {
        let mut conn = self.pool.get()?;
        conn.execute_batch(super::SCAN_TUNING)?;
        let exported = self.export_on(&mut conn, chunk_bytes, sink);
        // Back to point-read settings before the connection returns to the pool.
        conn.execute_batch(super::READ_TUNING)?;
        exported
    }

    fn export_on(&self, conn: &mut rusqlite::Connection, chunk_bytes: usize, mut sink: impl FnMut(Vec<u8>) -> bool) -> Result<usize> {
        let tx = conn.transaction()?;
        let mut count = 0;
        let mut out = Vec::with_capacity(chunk_bytes + 1024);
        for def in &self.manifest.entities {
            let sql = format!("SELECT {} FROM \"{}\" ORDER BY id", rows::select_list(def), def.name);
            let mut stmt = tx.prepare(&sql)?;
            let mut cursor = stmt.query([])?;
            while let Some(r) = cursor.next()? {
                let line = json!({"entity": def.name, "data": rows::from_sql_row(def, r)?});
                out.extend_from_slice(line.to_string().as_bytes());
                out.push(b'\n');
                count += 1;
                if out.len() >= chunk_bytes && !sink(std::mem::replace(&mut out, Vec::with_capacity(chunk_bytes + 1024))) {
                    return Ok(count);
                }
            }
        }
        if !out.is_empty() {
            sink(out);
        }
        Ok(count)
    }

    /// A persisted room's state document and its version (`_plaza_rooms`), if it has one.
    pub fn room_state(&self, name: &str) -> Result<Option<(serde_json::Value, u64)>> {
        let conn = self.pool.get()?;
        let row: Option<(String, i64)> = conn
            .prepare_cached("SELECT state, state_version FROM _plaza_rooms WHERE name = ?")?
            .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(state, version)| {
            let state = serde_json::from_str(&state)
                .map_err(|e| PlazaError::Internal(format!("stored state of room '{name}' is not JSON: {e}")))?;
            Ok((state, version.max(0) as u64))
        })
        .transpose()
    }

    /// Whether the read side answers at all (readiness).
    pub fn ping(&self) -> Result<()> {
        let conn = self.pool.get()?;
        conn.query_row("SELECT 1", [], |_| Ok(())).optional()?;
        Ok(())
    }
}

/// Read threads: a `SyncArbiter` of these runs reads off the actor threads. Under load each
/// thread drains the shared queue back to back instead of being woken once per request.
pub struct ReadWorker {
    reader: Reader,
}

impl ReadWorker {
    pub fn new(reader: Reader) -> Self {
        ReadWorker { reader }
    }
}

impl actix::Actor for ReadWorker {
    type Context = actix::SyncContext<Self>;
}

/// One read, as a closure over the `Reader`.
pub struct Read<F, R>(F, std::marker::PhantomData<fn() -> R>);

impl<F, R> Read<F, R> {
    pub fn new(f: F) -> Self {
        Read(f, std::marker::PhantomData)
    }
}

impl<F, R: 'static> actix::Message for Read<F, R> {
    type Result = R;
}

impl<F, R> actix::Handler<Read<F, R>> for ReadWorker
where
    F: FnOnce(&Reader) -> R + Send + 'static,
    R: Send + 'static,
{
    type Result = actix::MessageResult<Read<F, R>>;
    fn handle(&mut self, msg: Read<F, R>, _: &mut actix::SyncContext<Self>) -> Self::Result {
        actix::MessageResult((msg.0)(&self.reader))
    }
}

/// One row by id on any connection (the Writer reads the row before it changes it).
pub fn read_row(conn: &rusqlite::Connection, def: &crate::model::manifest::EntityDef, id: &str) -> Result<Option<Row>> {
    let sql = def.statement(Statement::SelectById, |def| {
        format!("SELECT {} FROM \"{}\" WHERE id = ?", rows::select_list(def), def.name)
    });
    Ok(conn.prepare_cached(sql)?.query_row([id], |r| rows::from_sql_row(def, r)).optional()?)
}

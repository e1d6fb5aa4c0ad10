//! Full-text search on SQLite FTS5. For each entity that declares `search`, `_plaza_fts_E` is
//! an external-content FTS5 table on the entity's own table (`unicode61`, diacritics removed):
//! the index only, the text stays in the row. Its rowid is the row's [`SEARCH_ROWID`], which is
//! why a searchable entity's table is a rowid table (see `schema::create_table`); a search
//! reads ids and facet values from the rows its matches point at.
//!
//! The Writer keeps the index in step inside the same transaction as the row ([`on_insert`],
//! [`on_update`], [`on_delete`]). The FTS5 writes wait in a [`PendingIndex`] until the group's
//! per-unit savepoints are released, because FTS5 flushes its pending terms into a new segment
//! at every savepoint: indexing inside them wrote one segment per row, and merging those cost
//! more than the indexing. At start the migration drops an index whose text or facet fields
//! changed, or whose entity no longer declares `search` ([`drop_stale`]), and builds the index
//! of each searchable entity that has none, existing rows included ([`build_missing`]).
//!
//! Segment merging is taken off the commit path: FTS5's `automerge` is off, so a commit only
//! writes its own small segment, and the Writer calls [`merge_step`] while it has nothing to
//! commit (FTS5's own `crisismerge` still merges in a commit if idle time never comes). That
//! merging had made an insert with search cost about three plain ones.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use serde_json::{Map, Value};

use super::reader::Reader;
use crate::error::{PlazaError, Result};
use crate::model::manifest::{AppManifest, EntityDef, Statement};
use crate::model::policy::AuthContext;
use crate::model::query::{fts_table, to_sql_where, Filter, SEARCH_ROWID};
use crate::model::rows::{self, Row};
use crate::model::search::SearchText;

/// Rows per search page when `limit` is absent (at most `query::MAX_LIMIT`).
pub const DEFAULT_SEARCH_LIMIT: usize = 20;
/// Distinct values reported per facet (the most frequent first).
pub const MAX_FACET_VALUES: usize = 100;

/// Pages of merge work one [`merge_step`] does per index (a few milliseconds).
pub const MERGE_STEP_PAGES: i64 = 64;

/// What the stored index was built from: a change rebuilds it. The leading version names the
/// layout (2: the entity's table holds the rowids; before, a table beside it mapped them).
fn index_spec(search: &crate::model::manifest::SearchDef) -> String {
    format!("2|{}|{}", search.text.join(","), search.facets.join(","))
}

fn recorded_indexes(conn: &Connection) -> Result<HashMap<String, String>> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS _plaza_search (entity TEXT PRIMARY KEY, text TEXT NOT NULL)")?;
    let mut stmt = conn.prepare("SELECT entity, text FROM _plaza_search")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Drops each index the manifest no longer asks for as it was built: its entity dropped
/// `search`, changed its text or facet fields, or it has an older layout (in the start-up
/// migration's transaction, before the tables are migrated).
pub fn drop_stale(conn: &Connection, manifest: &AppManifest) -> Result<()> {
    for (entity, spec) in recorded_indexes(conn)? {
        let wanted = manifest.entity(&entity).and_then(|d| d.search.as_ref()).map(index_spec);
        if wanted.as_ref() != Some(&spec) {
            drop_index(conn, &entity)?;
            tracing::info!(entity = %entity, "dropped its full-text index (search removed or changed)");
        }
    }
    Ok(())
}

/// Builds the index of each searchable entity that has none, over its existing rows (after the
/// tables are migrated, so each searchable table holds its rowids).
pub fn build_missing(conn: &Connection, manifest: &AppManifest) -> Result<()> {
    let recorded = recorded_indexes(conn)?;
    for def in &manifest.entities {
        let Some(search) = &def.search else { continue };
        if recorded.contains_key(&def.name) {
            continue;
        }
        let count = build_index(conn, def)?;
        conn.execute("INSERT INTO _plaza_search (entity, text) VALUES (?, ?)", params![def.name, index_spec(search)])?;
        tracing::info!(entity = %def.name, fields = %index_spec(search), rows = count, "built the full-text index");
    }
    Ok(())
}

fn drop_index(conn: &Connection, entity: &str) -> Result<()> {
    // The view and rowid table are those of the layout before version 2.
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS \"{fts}\"; DROP VIEW IF EXISTS \"{fts}_src\"; DROP TABLE IF EXISTS \"{fts}_rid\";",
        fts = fts_table(entity),
    ))?;
    conn.execute("DELETE FROM _plaza_search WHERE entity = ?", [entity])?;
    Ok(())
}

fn build_index(conn: &Connection, def: &EntityDef) -> Result<i64> {
    let Some(search) = &def.search else { return Ok(0) };
    let (en, fts) = (&def.name, fts_table(&def.name));
    let cols: Vec<String> = search.text.iter().map(|f| format!("\"{f}\"")).collect();
    conn.execute_batch(&format!(
        "CREATE VIRTUAL TABLE \"{fts}\" USING fts5({cols}, content='{en}', content_rowid='{SEARCH_ROWID}',
             tokenize='unicode61 remove_diacritics 2');
         INSERT INTO \"{fts}\" (\"{fts}\") VALUES ('rebuild');
         INSERT INTO \"{fts}\" (\"{fts}\", rank) VALUES ('automerge', 0);",
        cols = cols.join(", "),
    ))?;
    Ok(conn.query_row(&format!("SELECT count(*) FROM \"{en}\""), [], |r| r.get(0))?)
}

/// The text fields' values of a row, in index column order.
fn texts(def: &EntityDef, row: &Row) -> Vec<SqlValue> {
    let fields = def.search.as_ref().map_or(&[][..], |s| &s.text[..]);
    fields
        .iter()
        .map(|f| match row.get(f) {
            Some(Value::String(s)) => SqlValue::Text(s.clone()),
            _ => SqlValue::Null,
        })
        .collect()
}

/// `INSERT INTO fts (fts, rowid, cols..) VALUES ('delete', ?, ?..)` or the plain insert.
fn index_sql(def: &EntityDef, delete: bool) -> &Arc<str> {
    let which = if delete { Statement::SearchIndexDelete } else { Statement::SearchIndexInsert };
    def.statement(which, |def| {
        let fts = fts_table(&def.name);
        let n = def.search.as_ref().map_or(0, |s| s.text.len());
        let cols: Vec<String> = def.search.iter().flat_map(|s| s.text.iter()).map(|f| format!("\"{f}\"")).collect();
        if delete {
            format!("INSERT INTO \"{fts}\" (\"{fts}\", rowid, {}) VALUES ('delete', ?{})", cols.join(", "), ", ?".repeat(n))
        } else {
            format!("INSERT INTO \"{fts}\" (rowid, {}) VALUES (?{})", cols.join(", "), ", ?".repeat(n))
        }
    })
}

/// FTS5 writes of one commit group, in order, held back until no savepoint is open.
#[derive(Default)]
pub struct PendingIndex(Vec<(Arc<str>, Vec<SqlValue>)>);

impl PendingIndex {
    /// Queues indexing `row` under `rid` (or removing it, with the text it was indexed with).
    fn queue(&mut self, def: &EntityDef, rid: i64, row: &Row, delete: bool) {
        let mut values = vec![SqlValue::Integer(rid)];
        values.extend(texts(def, row));
        self.0.push((index_sql(def, delete).clone(), values));
    }

    /// Adds a unit's writes after the ones already queued.
    pub fn append(&mut self, unit: PendingIndex) {
        self.0.extend(unit.0);
    }

    /// Runs the queued writes (in the group's transaction, after its savepoints).
    ///
    /// Then flushes FTS5's pending terms into the group's segment (FTS5 flushes when a
    /// savepoint opens), so the commit that follows has little left to do and the Writer can
    /// hand over the next group first: larger groups, fewer segments (+6% search inserts/s at
    /// 16 connections, docs/PERFORMANCE.md).
    pub fn write(self, conn: &Connection) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        for (sql, values) in self.0 {
            conn.prepare_cached(&sql)?.execute(params_from_iter(values))?;
        }
        conn.prepare_cached("SAVEPOINT flush_index")?.execute([])?;
        conn.prepare_cached("RELEASE flush_index")?.execute([])?;
        Ok(())
    }
}

/// The index rowid of the row `id` of a searchable entity (`None` for other entities, with no
/// query); a delete asks before it removes the row.
pub fn rowid_of(conn: &Connection, def: &EntityDef, id: &str) -> Result<Option<i64>> {
    if def.search.is_none() {
        return Ok(None);
    }
    let sql = def.statement(Statement::SearchRowidLookup, |def| format!("SELECT {SEARCH_ROWID} FROM \"{}\" WHERE id = ?", def.name));
    Ok(conn.prepare_cached(sql)?.query_row([id], |r| r.get(0)).optional()?)
}

/// After a row is inserted (same transaction), with the rowid its insert was given.
pub fn on_insert(index: &mut PendingIndex, def: &EntityDef, rid: i64, row: &Row) {
    if def.search.is_some() {
        index.queue(def, rid, row, false);
    }
}

/// After a row is updated: it is re-indexed only when a text field changed (its facets are
/// read from the row itself). An update never changes a row's rowid, so it is looked up only
/// then.
pub fn on_update(conn: &Connection, index: &mut PendingIndex, def: &EntityDef, id: &str, old: &Row, new: &Row) -> Result<()> {
    if def.search.is_none() || texts(def, old) == texts(def, new) {
        return Ok(());
    }
    if let Some(rid) = rowid_of(conn, def, id)? {
        index.queue(def, rid, old, true);
        index.queue(def, rid, new, false);
    }
    Ok(())
}

/// After a row is deleted; `rid` is from [`rowid_of`] before the delete.
pub fn on_delete(index: &mut PendingIndex, def: &EntityDef, rid: Option<i64>, old: &Row) {
    if let Some(rid) = rid {
        index.queue(def, rid, old, true);
    }
}

/// Merges some of each index's segments (bounded work, for the Writer's idle time). Answers
/// whether any index had work left, so the Writer knows to call again.
pub fn merge_step(conn: &Connection, manifest: &AppManifest) -> Result<bool> {
    let mut worked = false;
    for def in manifest.entities.iter().filter(|d| d.search.is_some()) {
        let fts = fts_table(&def.name);
        let before = conn.total_changes();
        conn.prepare_cached(&format!("INSERT INTO \"{fts}\" (\"{fts}\", rank) VALUES ('merge', ?)"))?.execute([MERGE_STEP_PAGES])?;
        // FTS5: a difference of less than 2 means the merge found nothing to do.
        worked |= conn.total_changes() - before >= 2;
    }
    Ok(worked)
}

/// Results one read thread keeps for searches repeated with nothing committed in between.
pub const RECENT_SEARCHES: usize = 32;
/// Larger pages are not kept.
pub const RECENT_SEARCH_MAX_ROWS: usize = 100;

/// A read thread's recent search results, all computed at one commit count: the first search
/// after a commit finds a newer count and starts over. Per thread, so no lock; each read thread
/// computes a repeated search once per commit.
#[derive(Default)]
struct RecentSearches {
    version: u64,
    results: HashMap<String, SearchResult>,
}

thread_local! {
    static RECENT: std::cell::RefCell<RecentSearches> = std::cell::RefCell::new(RecentSearches::default());
}

/// What `GET /api/search/:Entity` asks.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// `None`: no text, every row the filter selects (facet browsing), in id order.
    pub text: Option<SearchText>,
    pub filter: Filter,
    pub facets: Vec<String>,
    pub limit: usize,
    pub offset: usize,
}

/// Rows (best match first, each with `_score`, higher is better), the number of matches, and
/// per facet the count of each value among all matches.
#[derive(Debug, Clone)]
pub struct SearchResult {
    pub data: Vec<Row>,
    pub total: usize,
    pub facets: Map<String, Value>,
}

/// A facet value as the key of the counts object.
fn facet_key(v: SqlValue) -> String {
    match v {
        SqlValue::Null => "null".into(),
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => f.to_string(),
        SqlValue::Text(s) => s,
        SqlValue::Blob(_) => String::new(),
    }
}

impl Reader {
    /// One pass over the matches the caller may read (ids, bm25, facet values) gives the
    /// total, the facet counts and the page; then the page's rows are read by id. Both in
    /// one read transaction.
    pub fn search(&self, auth: &AuthContext, entity: &str, req: &SearchRequest) -> Result<SearchResult> {
        let def = self.entity(entity)?;
        if def.search.is_none() {
            return Err(PlazaError::Validation(format!("{entity} declares no full-text search")));
        }
        let mut params = Vec::new();
        let readable = self.readable(entity, auth, &req.filter);
        let where_sql = to_sql_where(&readable, &mut params);
        let facet_cols: String = req.facets.iter().map(|f| format!(", t.\"{f}\"")).collect();
        let sql = match &req.text {
            // The matches first (materialized, so the planner cannot start from the table),
            // then each one's row by its rowid, checked against the filter and read policy.
            Some(text) => {
                let fts = fts_table(entity);
                params.insert(0, SqlValue::Text(text.fts_query()));
                format!(
                    "WITH s AS MATERIALIZED (SELECT rowid AS _rid, bm25(\"{fts}\") AS _score FROM \"{fts}\" WHERE \"{fts}\" MATCH ?) \
                     SELECT t.\"id\", s._score{facet_cols} FROM s JOIN \"{en}\" t ON t.{SEARCH_ROWID} = s._rid WHERE {where_sql}",
                    en = def.name,
                )
            }
            None => format!("SELECT t.\"id\", 0.0{facet_cols} FROM \"{}\" t WHERE {where_sql}", def.name),
        };
        // The statement and its parameters hold the text, filter, policy and facets asked for.
        let key = format!("{sql}\u{0}{params:?}\u{0}{}\u{0}{}", req.limit, req.offset);
        let version = self.version.get();
        let recent = RECENT.with_borrow(|r| if r.version == version { r.results.get(&key).cloned() } else { None });
        if let Some(found) = recent {
            return Ok(found);
        }
        let found = self.run_search(def, &sql, params, req)?;
        if found.data.len() <= RECENT_SEARCH_MAX_ROWS {
            RECENT.with_borrow_mut(|r| {
                if r.version != version || r.results.len() >= RECENT_SEARCHES {
                    *r = RecentSearches { version, results: HashMap::new() };
                }
                r.results.insert(key, found.clone());
            });
        }
        Ok(found)
    }

    fn run_search(&self, def: &EntityDef, sql: &str, params: Vec<SqlValue>, req: &SearchRequest) -> Result<SearchResult> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let mut hits: Vec<(f64, String)> = Vec::new();
        let mut counts: Vec<HashMap<String, u64>> = vec![HashMap::new(); req.facets.len()];
        {
            let mut stmt = tx.prepare_cached(sql)?;
            let mut cursor = stmt.query(params_from_iter(params))?;
            while let Some(r) = cursor.next()? {
                hits.push((r.get(1)?, r.get(0)?));
                for (i, c) in counts.iter_mut().enumerate() {
                    *c.entry(facet_key(r.get(i + 2)?)).or_default() += 1;
                }
            }
        }
        let total = hits.len();
        // bm25 is lower for better matches; ties (and browsing) in id order.
        let by_rank = |a: &(f64, String), b: &(f64, String)| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1));
        let end = req.offset.saturating_add(req.limit).min(total);
        if end < total {
            if end > 0 {
                hits.select_nth_unstable_by(end - 1, by_rank);
            }
            hits.truncate(end);
        }
        hits.sort_unstable_by(by_rank);
        let page: Vec<(f64, String)> = hits.into_iter().skip(req.offset).collect();
        let mut data = Vec::with_capacity(page.len());
        if !page.is_empty() {
            let ids: Vec<&str> = page.iter().map(|(_, id)| id.as_str()).collect();
            let ids_json = serde_json::to_string(&ids).map_err(|e| PlazaError::Internal(e.to_string()))?;
            let sql = format!(
                "SELECT {} FROM \"{}\" WHERE \"id\" IN (SELECT value FROM json_each(?))",
                rows::select_list(def),
                def.name
            );
            let mut stmt = tx.prepare_cached(&sql)?;
            let mut found: HashMap<String, Row> = stmt
                .query_map([ids_json], |r| rows::from_sql_row(def, r))?
                .filter_map(|r| r.ok())
                .filter_map(|row| Some((row.get("id")?.as_str()?.to_string(), row)))
                .collect();
            for (score, id) in page {
                if let Some(mut row) = found.remove(&id) {
                    let score = serde_json::Number::from_f64(-score).map_or(Value::Null, Value::Number);
                    row.insert("_score".into(), score);
                    data.push(row);
                }
            }
        }
        let mut facets = Map::new();
        for (name, c) in req.facets.iter().zip(counts) {
            let mut values: Vec<(String, u64)> = c.into_iter().collect();
            values.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            values.truncate(MAX_FACET_VALUES);
            facets.insert(name.clone(), Value::Object(values.into_iter().map(|(k, n)| (k, Value::from(n))).collect()));
        }
        Ok(SearchResult { data, total, facets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `Note` with a searchable `body` and a `tag` facet.
    fn tagged_notes() -> AppManifest {
        AppManifest::from_json(
            r#"{"entities":[{"name":"Note","fields":[{"name":"body","type":"string"},{"name":"tag","type":"string"}],
                "search":{"text":["body"],"facets":["tag"]}}]}"#,
        )
        .unwrap()
    }

    /// Commits one row at a time (a segment each, with automerge off), then merges in idle
    /// steps: the steps end, leave fewer segments, and every row is still found.
    #[test]
    fn idle_merge_steps_end_and_keep_every_row() {
        let manifest = tagged_notes();
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn, &manifest).unwrap();
        let def = manifest.entity("Note").unwrap();
        for i in 0..200 {
            let row: Row = json!({"body": format!("common word{i}"), "tag": "t"}).as_object().unwrap().clone();
            let tx = conn.transaction().unwrap();
            tx.execute("INSERT INTO \"Note\" (id, \"createdAt\", \"updatedAt\", body, tag) VALUES (?, '', '', ?, 't')", params![format!("n{i}"), format!("common word{i}")])
                .unwrap();
            let mut index = PendingIndex::default();
            on_insert(&mut index, def, tx.last_insert_rowid(), &row);
            index.write(&tx).unwrap();
            tx.commit().unwrap();
        }
        let segments = |c: &Connection| -> i64 {
            c.query_row("SELECT count(*) FROM \"_plaza_fts_Note_data\" WHERE id >= 137438953472", [], |r| r.get(0)).unwrap()
        };
        let before = segments(&conn);
        let mut steps = 0;
        while merge_step(&conn, &manifest).unwrap() {
            steps += 1;
            assert!(steps < 1000, "merging never ends");
        }
        assert!(steps > 0 && segments(&conn) < before, "{steps} steps, {before} -> {} leaf pages", segments(&conn));
        let found: i64 = conn.query_row("SELECT count(*) FROM \"_plaza_fts_Note\" WHERE \"_plaza_fts_Note\" MATCH 'common'", [], |r| r.get(0)).unwrap();
        assert_eq!(found, 200);
    }

    /// A database whose index a version before layout 2 built (a table mapping rowids to ids,
    /// and a view joining it to the entity's table) migrates: the old objects go, the table
    /// gets its rowids, and its rows are found.
    #[test]
    fn an_index_of_the_earlier_layout_is_rebuilt_on_the_rows_rowids() {
        let manifest = tagged_notes();
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE \"Note\" (id TEXT PRIMARY KEY NOT NULL, createdAt TEXT NOT NULL, updatedAt TEXT NOT NULL, body TEXT, tag TEXT) WITHOUT ROWID;
             INSERT INTO \"Note\" VALUES ('a', '', '', 'first note', 'x'), ('b', '', '', 'second note', 'y');
             CREATE TABLE \"_plaza_fts_Note_rid\" (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, \"facet_tag\");
             CREATE VIEW \"_plaza_fts_Note_src\" AS SELECT m.rid AS rid, t.\"body\" AS \"body\" FROM \"_plaza_fts_Note_rid\" m JOIN \"Note\" t ON t.\"id\" = m.id;
             CREATE VIRTUAL TABLE \"_plaza_fts_Note\" USING fts5(\"body\", content='_plaza_fts_Note_src', content_rowid='rid');
             INSERT INTO \"_plaza_fts_Note_rid\" (id, \"facet_tag\") SELECT id, tag FROM \"Note\";
             INSERT INTO \"_plaza_fts_Note\" (\"_plaza_fts_Note\") VALUES ('rebuild');
             CREATE TABLE _plaza_fields (entity TEXT NOT NULL, field TEXT NOT NULL, type TEXT NOT NULL, optional INTEGER NOT NULL,
                 PRIMARY KEY (entity, field));
             INSERT INTO _plaza_fields VALUES ('Note', 'body', 'string', 0), ('Note', 'tag', 'string', 0);
             CREATE TABLE _plaza_search (entity TEXT PRIMARY KEY, text TEXT NOT NULL);
             INSERT INTO _plaza_search VALUES ('Note', 'body|tag');",
        )
        .unwrap();
        crate::store::schema::migrate(&mut conn, &manifest).unwrap();
        let legacy: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE name IN ('_plaza_fts_Note_rid', '_plaza_fts_Note_src')", [], |r| r.get(0))
            .unwrap();
        assert_eq!(legacy, 0, "the old rowid table and view are gone");
        let found: Vec<String> = conn
            .prepare("SELECT t.id FROM \"_plaza_fts_Note\" f JOIN \"Note\" t ON t._plaza_rid = f.rowid WHERE f.\"_plaza_fts_Note\" MATCH 'note' ORDER BY t.id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(found, ["a", "b"]);
    }

    #[test]
    fn a_commit_group_indexes_its_rows_in_one_segment() {
        let manifest = AppManifest::from_json(
            r#"{"entities":[{"name":"Note","fields":[{"name":"body","type":"string"}],"search":{"text":["body"]}}]}"#,
        )
        .unwrap();
        let mut conn = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut conn, &manifest).unwrap();
        let def = manifest.entity("Note").unwrap();
        let segments = |c: &Connection| -> i64 {
            c.query_row("SELECT count(*) FROM \"_plaza_fts_Note_data\" WHERE id >= 137438953472", [], |r| r.get(0)).unwrap()
        };
        let before = segments(&conn);
        // As the Writer does: one savepoint per unit, the index written after them all.
        let tx = conn.transaction().unwrap();
        let mut index = PendingIndex::default();
        for i in 0..20 {
            tx.execute_batch("SAVEPOINT unit").unwrap();
            let row: Row = json!({"body": format!("word{i} shared")}).as_object().unwrap().clone();
            tx.execute("INSERT INTO \"Note\" (id, \"createdAt\", \"updatedAt\", body) VALUES (?, '', '', ?)", params![format!("n{i}"), row["body"].as_str()]).unwrap();
            let mut unit = PendingIndex::default();
            on_insert(&mut unit, def, tx.last_insert_rowid(), &row);
            index.append(unit);
            tx.execute_batch("RELEASE unit").unwrap();
        }
        index.write(&tx).unwrap();
        assert_eq!(segments(&tx) - before, 1, "the segment is written before the commit, so the next group can be handed over");
        tx.commit().unwrap();
        assert_eq!(segments(&conn) - before, 1, "twenty rows in one group: one new segment, not one per savepoint");
        let found: i64 = conn.query_row("SELECT count(*) FROM \"_plaza_fts_Note\" WHERE \"_plaza_fts_Note\" MATCH 'shared'", [], |r| r.get(0)).unwrap();
        assert_eq!(found, 20);
    }
}

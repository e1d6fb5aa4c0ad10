//! Tables from the manifest, and the migration rules: a new entity or a new optional field is
//! added in place; anything that could break existing rows refuses to start, naming the field.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{PlazaError, Result};
use crate::model::manifest::{AppManifest, EntityDef, FieldType};
use crate::model::query::SEARCH_ROWID;

/// Plaza's own tables. Entity names cannot start with `_`, so they never collide.
const INTERNAL_DDL: &str = "
CREATE TABLE IF NOT EXISTS _plaza_fields (
    entity TEXT NOT NULL, field TEXT NOT NULL, type TEXT NOT NULL, optional INTEGER NOT NULL,
    PRIMARY KEY (entity, field));
-- AUTOINCREMENT so a seq is never reused, even after every retained event is pruned.
CREATE TABLE IF NOT EXISTS _plaza_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, entity TEXT NOT NULL, row_id TEXT NOT NULL,
    kind TEXT NOT NULL, data TEXT, ts TEXT NOT NULL);
-- Sessions by token selector; only a SHA-256 of the secret half is kept.
CREATE TABLE IF NOT EXISTS _plaza_sessions (
    selector TEXT PRIMARY KEY, verifier_hash BLOB NOT NULL, user_id TEXT NOT NULL,
    guest INTEGER NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
-- Sync push dedup: the first result of each (caller, op_id), bounded by PLAZA_OP_RETAIN.
CREATE TABLE IF NOT EXISTS _plaza_ops (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, op_key TEXT NOT NULL UNIQUE, result TEXT NOT NULL);
-- State documents of rooms whose rule persists them, saved when the room stops (and while it
-- runs), loaded when it starts again.
CREATE TABLE IF NOT EXISTS _plaza_rooms (
    name TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL, state_version INTEGER NOT NULL,
    saved_at INTEGER NOT NULL) WITHOUT ROWID;
-- The last snapshot of each persisting shard, saved when it stops (and on drain).
CREATE TABLE IF NOT EXISTS _plaza_shards (
    name TEXT PRIMARY KEY, sim TEXT NOT NULL, tick INTEGER NOT NULL, snapshot TEXT NOT NULL,
    saved_at INTEGER NOT NULL);
-- Background jobs (jobs::queue); times in ms since the epoch, errors a JSON array per attempt.
CREATE TABLE IF NOT EXISTS _plaza_jobs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL,
    priority INTEGER NOT NULL, run_at INTEGER NOT NULL, attempts INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL, timeout_ms INTEGER NOT NULL, last_error TEXT,
    errors TEXT NOT NULL, result TEXT, created_by TEXT NOT NULL, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER);
CREATE INDEX IF NOT EXISTS _plaza_jobs_status ON _plaza_jobs (status, created_at);
-- The last fire time of each cron entry (jobs::scheduler).
CREATE TABLE IF NOT EXISTS _plaza_cron (name TEXT PRIMARY KEY, last_fire INTEGER NOT NULL);
-- Uploaded files' metadata; the bytes are in PLAZA_FILES_DIR under the id.
CREATE TABLE IF NOT EXISTS _plaza_files (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, created_at INTEGER NOT NULL);
";

/// Brings the database up to the manifest in one transaction.
pub fn migrate(conn: &mut Connection, manifest: &AppManifest) -> Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(INTERNAL_DDL)?;
    // Before any table is rebuilt to follow its entity's `search`: an index never outlives the
    // layout it was built on.
    super::search::drop_stale(&tx, manifest)?;
    for entity in &manifest.entities {
        migrate_entity(&tx, entity)?;
    }
    super::search::build_missing(&tx, manifest)?;
    tx.commit()?;
    Ok(())
}

fn migrate_entity(tx: &rusqlite::Transaction<'_>, entity: &EntityDef) -> Result<()> {
    let en = &entity.name;
    let exists: bool = tx
        .query_row("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", [en], |_| Ok(true))
        .optional()?
        .unwrap_or(false);
    let searchable = entity.search.is_some();
    if !exists {
        let cols: Vec<String> = ["\"createdAt\" TEXT NOT NULL".to_string(), "\"updatedAt\" TEXT NOT NULL".to_string()]
            .into_iter()
            .chain(entity.fields.iter().map(|f| format!("\"{}\" {}", f.name, f.ty.sql_type())))
            .collect();
        tx.execute_batch(&create_table(en, searchable, &cols))?;
        tracing::info!(entity = %en, "created table");
    } else if has_column(tx, en, SEARCH_ROWID)? != searchable {
        rebuild_table(tx, en, searchable)?;
    }
    for field in &entity.fields {
        let recorded: Option<(String, bool)> = tx
            .query_row(
                "SELECT type, optional FROM _plaza_fields WHERE entity=? AND field=?",
                params![en, field.name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match recorded {
            Some((ty, _)) if ty != field.ty.to_string() => {
                return Err(incompatible(format!(
                    "{en}.{} changed type from {ty} to {}; add a new field instead",
                    field.name, field.ty
                )))
            }
            Some((_, true)) if !field.optional => {
                return Err(incompatible(format!(
                    "{en}.{} became required; existing rows may have no value (keep it optional)",
                    field.name
                )))
            }
            Some(_) => {}
            None if exists && !field.optional && has_rows(tx, en)? => {
                return Err(incompatible(format!(
                    "new field {en}.{} must be optional: existing {en} rows have no value for it",
                    field.name
                )))
            }
            None => {
                if exists && !has_column(tx, en, &field.name)? {
                    tx.execute_batch(&format!(
                        "ALTER TABLE \"{en}\" ADD COLUMN \"{}\" {}",
                        field.name,
                        field.ty.sql_type()
                    ))?;
                    tracing::info!(entity = %en, field = %field.name, "added column");
                }
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO _plaza_fields (entity, field, type, optional) VALUES (?,?,?,?)",
            params![en, field.name, field.ty.to_string(), field.optional],
        )?;
        if field.unique {
            create_index(tx, en, std::slice::from_ref(&field.name), true)?;
        }
        if matches!(field.ty, FieldType::Id(_)) {
            // Foreign keys are filtered on constantly (ownerId == auth.userId).
            create_index(tx, en, std::slice::from_ref(&field.name), false)?;
        }
    }
    for idx in &entity.indexes {
        create_index(tx, en, &idx.fields, idx.unique)?;
    }
    let dropped: Vec<String> = {
        let mut stmt = tx.prepare("SELECT field FROM _plaza_fields WHERE entity=?")?;
        let names = stmt.query_map([en], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        names.into_iter().filter(|n| entity.field(n).is_none()).collect()
    };
    for name in dropped {
        tracing::warn!(entity = %en, field = %name, "field left the manifest; its column and data are kept");
    }
    Ok(())
}

/// `CREATE TABLE` for an entity with `columns` besides its id. A plain entity is keyed by its
/// id alone (WITHOUT ROWID: one B-tree per row). A searchable one is a rowid table keyed by
/// [`SEARCH_ROWID`], which its FTS5 index uses as its rowid, with the id unique beside it: the
/// index then needs no table mapping its rowids to ids, which cost each insert two more
/// B-tree writes (a tenth of a search insert's time on the Writer).
fn create_table(name: &str, searchable: bool, columns: &[String]) -> String {
    let rest: String = columns.iter().map(|c| format!(", {c}")).collect();
    if searchable {
        format!("CREATE TABLE \"{name}\" ({SEARCH_ROWID} INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE{rest})")
    } else {
        format!("CREATE TABLE \"{name}\" (id TEXT PRIMARY KEY NOT NULL{rest}) WITHOUT ROWID")
    }
}

/// Copies an entity's table into the layout [`create_table`] gives it (search was added or
/// removed), keeping every column it has, including those of fields that left the manifest.
/// Its indexes go with the old table; the migration creates them again right after.
fn rebuild_table(tx: &rusqlite::Transaction<'_>, en: &str, searchable: bool) -> Result<()> {
    let columns: Vec<(String, String, bool)> = {
        let mut stmt = tx.prepare(&format!("PRAGMA table_info(\"{en}\")"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(1)?, r.get(2)?, r.get(3)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let kept: Vec<&(String, String, bool)> = columns.iter().filter(|(name, ..)| name != "id" && name != SEARCH_ROWID).collect();
    let defs: Vec<String> =
        kept.iter().map(|(name, ty, not_null)| format!("\"{name}\" {ty}{}", if *not_null { " NOT NULL" } else { "" })).collect();
    let names: String = kept.iter().map(|(name, ..)| format!(", \"{name}\"")).collect();
    let staging = format!("_plaza_rebuild_{en}");
    tx.execute_batch(&format!(
        "{create};
         INSERT INTO \"{staging}\" (id{names}) SELECT id{names} FROM \"{en}\" ORDER BY id;
         DROP TABLE \"{en}\";
         ALTER TABLE \"{staging}\" RENAME TO \"{en}\";",
        create = create_table(&staging, searchable, &defs),
    ))?;
    tracing::info!(entity = %en, searchable, "rebuilt table for its search index");
    Ok(())
}

fn incompatible(msg: String) -> PlazaError {
    PlazaError::Validation(format!("incompatible manifest change: {msg}"))
}

fn has_rows(tx: &rusqlite::Transaction<'_>, table: &str) -> Result<bool> {
    Ok(tx.query_row(&format!("SELECT EXISTS (SELECT 1 FROM \"{table}\")"), [], |r| r.get(0))?)
}

fn has_column(tx: &rusqlite::Transaction<'_>, table: &str, column: &str) -> Result<bool> {
    let mut stmt = tx.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
    let names = stmt.query_map([], |r| r.get::<_, String>(1))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names.iter().any(|n| n == column))
}

fn create_index(tx: &rusqlite::Transaction<'_>, table: &str, fields: &[String], unique: bool) -> Result<()> {
    let name = format!("{}idx_{table}_{}", if unique { "u" } else { "" }, fields.join("_"));
    let cols = fields.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(",");
    let kind = if unique { "UNIQUE INDEX" } else { "INDEX" };
    tx.execute_batch(&format!("CREATE {kind} IF NOT EXISTS \"{name}\" ON \"{table}\" ({cols})"))
        .map_err(|e| match PlazaError::from(e) {
            PlazaError::Conflict(m) => incompatible(format!("cannot make {table}({}) unique: {m}", fields.join(","))),
            other => other,
        })
}

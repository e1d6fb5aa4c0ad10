//! Uploaded files' metadata in `_plaza_files`: id, owner, original name, sniffed content type,
//! size and SHA-256. The bytes live on disk under the id (chosen here, never by the client);
//! the server streams them in and out on blocking threads. There is no in-memory state to own,
//! so there is no actor: rows are written through the Writer and read on the read threads.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use crate::error::{PlazaError, Result};
use crate::store::writer::WriteOp;

/// Longest original file name kept (in characters).
pub const MAX_NAME_CHARS: usize = 255;
/// Ids are 16 random bytes, base64url: 22 characters.
pub const ID_LEN: usize = 22;

#[derive(Debug, Clone, Serialize)]
pub struct FileMeta {
    pub id: String,
    /// `admin` or the uploader's user id.
    pub owner: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub created_at: i64,
}

/// A new file id: 128 random bits, so a file's URL cannot be guessed.
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| PlazaError::Internal(format!("OS randomness unavailable: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// Whether `id` can be one of ours (and so is safe as a file name).
pub fn is_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The client's file name as metadata only: its last path segment, without control characters,
/// at most `MAX_NAME_CHARS`; `file` when nothing is left.
pub fn clean_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).take(MAX_NAME_CHARS).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        "file".into()
    } else {
        cleaned.to_string()
    }
}

impl FileMeta {
    pub fn insert_op(&self) -> WriteOp {
        WriteOp::Internal {
            sql: "INSERT INTO _plaza_files (id, owner, name, content_type, size, sha256, created_at) VALUES (?,?,?,?,?,?,?)",
            params: vec![
                SqlValue::Text(self.id.clone()),
                SqlValue::Text(self.owner.clone()),
                SqlValue::Text(self.name.clone()),
                SqlValue::Text(self.content_type.clone()),
                SqlValue::Integer(self.size),
                SqlValue::Text(self.sha256.clone()),
                SqlValue::Integer(self.created_at),
            ],
        }
    }
}

pub fn delete_op(id: &str) -> WriteOp {
    WriteOp::Internal { sql: "DELETE FROM _plaza_files WHERE id = ?", params: vec![SqlValue::Text(id.to_string())] }
}

/// Files newest first, a page at a time (Studio's file list).
pub fn list(conn: &Connection, limit: usize, offset: usize) -> Result<Vec<FileMeta>> {
    let mut stmt = conn.prepare(
        "SELECT id, owner, name, content_type, size, sha256, created_at FROM _plaza_files ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
    )?;
    let rows = stmt.query_map([limit as i64, offset as i64], meta_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn meta_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FileMeta> {
    Ok(FileMeta {
        id: r.get(0)?,
        owner: r.get(1)?,
        name: r.get(2)?,
        content_type: r.get(3)?,
        size: r.get(4)?,
        sha256: r.get(5)?,
        created_at: r.get(6)?,
    })
}

pub fn read(conn: &Connection, id: &str) -> Result<Option<FileMeta>> {
    Ok(conn
        .query_row(
            "SELECT id, owner, name, content_type, size, sha256, created_at FROM _plaza_files WHERE id = ?",
            [id],
            meta_row,
        )
        .optional()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_are_only_metadata() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\me\\cat.png"), "cat.png");
        assert_eq!(clean_name("a\u{0}b\nc.txt"), "abc.txt");
        assert_eq!(clean_name("../.."), "file");
        assert_eq!(clean_name(""), "file");
        let id = new_id().unwrap();
        assert!(is_id(&id), "{id}");
        assert!(!is_id("../../../../etc/passwd"));
    }
}

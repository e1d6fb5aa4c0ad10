//! The `Change` record: one committed change to a row, exactly as clients see it in pulls,
//! pushes and live frames.

use serde::{Deserialize, Serialize};

use super::rows::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        match s {
            "insert" => Some(ChangeKind::Insert),
            "update" => Some(ChangeKind::Update),
            "delete" => Some(ChangeKind::Delete),
            _ => None,
        }
    }
}

/// One committed change, exactly as clients see it in pulls and live frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub seq: i64,
    pub entity: String,
    pub row_id: String,
    pub kind: ChangeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Row>,
    pub timestamp: String,
    /// The row as it was before a delete: never sent, but read policies are checked on it.
    #[serde(skip)]
    pub prior: Option<Row>,
}

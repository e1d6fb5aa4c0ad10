//! Link and unlink: setting or clearing a relation's key is an ordinary update of the row
//! that holds it, so write policies, the change log and live subscribers see nothing special.

use rusqlite::types::Value as SqlValue;

use super::writer::WriteOp;
use crate::error::{PlazaError, Result};
use crate::model::manifest::AppManifest;
use crate::model::rows;

/// One relation between two rows, seen from the row holding the key.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// The entity and row whose `field` holds the key.
    pub holder: String,
    pub holder_id: String,
    pub field: String,
    /// The row the key points to (must exist to link).
    pub other: String,
    pub other_id: String,
}

impl Link {
    /// `{"entity","id","relation","target_id"}`: for a to-one relation `id` holds the key and
    /// `target_id` is what it points to; for a to-many relation the other way round.
    pub fn resolve(manifest: &AppManifest, entity: &str, id: &serde_json::Value, relation: &str, target_id: &serde_json::Value) -> Result<Link> {
        let def = manifest.entity(entity).ok_or_else(|| PlazaError::UnknownEntity(entity.to_string()))?;
        let rel = def
            .relation(relation)
            .ok_or_else(|| PlazaError::Validation(format!("{entity} has no relation '{relation}'")))?;
        let (id, target_id) = (rows::validate_id(id)?, rows::validate_id(target_id)?);
        Ok(if rel.many {
            Link { holder: rel.target.clone(), holder_id: target_id, field: rel.field.clone(), other: def.name.clone(), other_id: id }
        } else {
            Link { holder: def.name.clone(), holder_id: id, field: rel.field.clone(), other: rel.target.clone(), other_id: target_id }
        })
    }

    pub fn link_op(&self) -> WriteOp {
        WriteOp::Update {
            entity: self.holder.clone(),
            id: self.holder_id.clone(),
            values: vec![(self.field.clone(), SqlValue::Text(self.other_id.clone()))],
        }
    }

    /// Clears the key only while it still points at `other_id` (checked inside the commit).
    pub fn unlink_op(&self, manifest: &AppManifest) -> Result<WriteOp> {
        let required = manifest.entity(&self.holder).and_then(|d| d.field(&self.field)).is_some_and(|f| !f.optional);
        if required {
            return Err(PlazaError::Validation(format!("cannot unlink: {}.{} is required", self.holder, self.field)));
        }
        Ok(WriteOp::UpdateIf {
            entity: self.holder.clone(),
            id: self.holder_id.clone(),
            expect: (self.field.clone(), SqlValue::Text(self.other_id.clone())),
            values: vec![(self.field.clone(), SqlValue::Null)],
            mismatch: format!("{} '{}' is not linked to {} '{}'", self.holder, self.holder_id, self.other, self.other_id),
        })
    }
}

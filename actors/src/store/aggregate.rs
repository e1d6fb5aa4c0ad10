//! Running an [`Aggregate`]: one grouped SELECT over the rows the caller may read.

use rusqlite::params_from_iter;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value};

use super::reader::Reader;
use crate::error::{PlazaError, Result};
use crate::model::aggregate::{group_json, AggFn, Aggregate, MAX_AGGREGATE_GROUPS};
use crate::model::policy::AuthContext;
use crate::model::query::to_sql_where;
use crate::model::rows::to_json;

impl Reader {
    /// `[{"key":{..},"count":..,..}]`, groups in key order; one group with an empty key when
    /// there is no `groupBy`.
    pub fn aggregate(&self, auth: &AuthContext, entity: &str, agg: &Aggregate) -> Result<Vec<Value>> {
        let def = self.entity(entity)?;
        let mut params = Vec::new();
        let where_sql = to_sql_where(&self.readable(entity, auth, &agg.filter), &mut params);
        let sql = agg.to_sql(&def.name, &where_sql);
        // The JSON type of each measure column: min/max keep the field's type.
        let mut kinds = Vec::new();
        for out in &agg.outputs {
            for f in &out.fields {
                let ty = match out.func {
                    AggFn::Min | AggFn::Max => f.as_deref().and_then(|f| def.field(f)).map(|d| d.ty.clone()),
                    _ => None,
                };
                kinds.push(ty);
            }
        }
        let conn = self.pool.get()?;
        let mut stmt = conn.prepare_cached(&sql)?;
        let mut cursor = stmt.query(params_from_iter(params))?;
        let mut groups = Vec::new();
        while let Some(r) = cursor.next()? {
            if groups.len() == MAX_AGGREGATE_GROUPS {
                return Err(PlazaError::Validation(format!(
                    "more than {MAX_AGGREGATE_GROUPS} groups; group by fewer fields or narrow where"
                )));
            }
            let mut key = Map::new();
            for (i, f) in agg.group_by.iter().enumerate() {
                key.insert(f.clone(), to_json(def.field(f).map(|d| &d.ty), r.get::<_, SqlValue>(i)?));
            }
            let base = agg.group_by.len();
            let mut measures = Vec::with_capacity(kinds.len());
            for (j, ty) in kinds.iter().enumerate() {
                measures.push(to_json(ty.as_ref(), r.get::<_, SqlValue>(base + j)?));
            }
            groups.push(group_json(agg, key, measures.into_iter()));
        }
        Ok(groups)
    }
}

//! Running a [`GraphQuery`] on one read connection, in one read transaction (every level sees
//! the same snapshot): one SQL query per root and per include level, each with the caller's
//! read policy, keyed by `IN (SELECT value FROM json_each(?))` over the parents' keys. A
//! to-many include takes its `$limit`/`$offset` per parent with `row_number()` over the
//! foreign key, still in that one query.

use std::collections::HashMap;

use rusqlite::types::Value as SqlValue;
use rusqlite::{params_from_iter, Connection};
use serde_json::{Map, Value};

use super::reader::Reader;
use crate::error::{PlazaError, Result};
use crate::model::graph::{GraphQuery, Node, DEFAULT_GRAPH_LIMIT, MAX_GRAPH_ROWS};
use crate::model::manifest::EntityDef;
use crate::model::policy::AuthContext;
use crate::model::query::{to_sql_order, to_sql_where};
use crate::model::rows::{self, Row};

/// Rows still allowed in this request.
struct Budget(usize);

impl Budget {
    fn take(&mut self, n: usize) -> Result<()> {
        self.0 = self.0.checked_sub(n).ok_or_else(|| {
            PlazaError::Validation(format!(
                "the graph query would return more than {MAX_GRAPH_ROWS} rows; narrow it with where or $limit"
            ))
        })?;
        Ok(())
    }

    /// A LIMIT that fetches one row past the budget, so going over is noticed without reading on.
    fn fetch_cap(&self) -> i64 {
        self.0 as i64 + 1
    }
}

impl Reader {
    /// `{"Entity":[rows with their includes]}` for each root, only rows `auth` may read.
    pub fn graph(&self, auth: &AuthContext, q: &GraphQuery) -> Result<Map<String, Value>> {
        let mut conn = self.pool.get()?;
        let tx = conn.transaction()?;
        let mut budget = Budget(MAX_GRAPH_ROWS);
        let mut out = Map::new();
        for (name, node) in &q.roots {
            let def = self.entity(name)?;
            let mut params = Vec::new();
            let where_sql = to_sql_where(&self.readable(name, auth, &node.query.filter), &mut params);
            params.push(SqlValue::Integer(node.query.limit_or(DEFAULT_GRAPH_LIMIT).min(budget.fetch_cap())));
            params.push(SqlValue::Integer(node.query.offset.unwrap_or(0)));
            let sql = format!(
                "SELECT {} FROM \"{}\" WHERE {where_sql} {} LIMIT ? OFFSET ?",
                rows::select_list(def),
                def.name,
                to_sql_order(&node.query.order)
            );
            let mut found = select(&tx, def, &sql, params)?;
            budget.take(found.len())?;
            self.include(&tx, auth, node, &mut found, &mut budget)?;
            out.insert(name.clone(), Value::Array(found.into_iter().map(Value::Object).collect()));
        }
        Ok(out)
    }

    /// Fills `node`'s includes into `parents`, one query per include.
    fn include(&self, conn: &Connection, auth: &AuthContext, node: &Node, parents: &mut [Row], budget: &mut Budget) -> Result<()> {
        for inc in &node.includes {
            let (rel, child) = (&inc.relation, &inc.node);
            let def = self.entity(&rel.target)?;
            // To-many: children whose `field` is a parent's id; to-one: the row `field` names.
            let parent_key = |p: &Row| -> Option<String> {
                p.get(if rel.many { "id" } else { rel.field.as_str() }).and_then(Value::as_str).map(str::to_string)
            };
            let mut keys: Vec<String> = parents.iter().filter_map(parent_key).collect();
            keys.sort_unstable();
            keys.dedup();
            let mut children = if keys.is_empty() {
                Vec::new()
            } else {
                let keys_json = serde_json::to_string(&keys).map_err(|e| PlazaError::Internal(e.to_string()))?;
                let mut params = Vec::new();
                let where_sql = to_sql_where(&self.readable(&rel.target, auth, &child.query.filter), &mut params);
                params.push(SqlValue::Text(keys_json));
                let cols = rows::select_list(def);
                let sql = if rel.many {
                    let limit = child.query.limit_or(DEFAULT_GRAPH_LIMIT);
                    let offset = child.query.offset.unwrap_or(0);
                    params.extend([SqlValue::Integer(offset), SqlValue::Integer(offset.saturating_add(limit))]);
                    format!(
                        "SELECT {cols} FROM (SELECT {cols}, row_number() OVER (PARTITION BY \"{f}\" {order}) AS _rn \
                         FROM \"{t}\" WHERE ({where_sql}) AND \"{f}\" IN (SELECT value FROM json_each(?))) \
                         WHERE _rn > ? AND _rn <= ? ORDER BY \"{f}\", _rn LIMIT ?",
                        f = rel.field,
                        t = def.name,
                        order = to_sql_order(&child.query.order),
                    )
                } else {
                    format!(
                        "SELECT {cols} FROM \"{t}\" WHERE ({where_sql}) AND \"id\" IN (SELECT value FROM json_each(?)) LIMIT ?",
                        t = def.name
                    )
                };
                params.push(SqlValue::Integer(budget.fetch_cap()));
                select(conn, def, &sql, params)?
            };
            budget.take(children.len())?;
            self.include(conn, auth, child, &mut children, budget)?;
            // The same child may belong under several parents (a to-one shared by many rows, or
            // a parent reached twice), so parents get copies.
            if rel.many {
                let mut by_parent: HashMap<String, Vec<Value>> = HashMap::new();
                for c in children {
                    if let Some(k) = c.get(&rel.field).and_then(Value::as_str).map(str::to_string) {
                        by_parent.entry(k).or_default().push(Value::Object(c));
                    }
                }
                for p in parents.iter_mut() {
                    let list = parent_key(p).and_then(|k| by_parent.get(&k).cloned()).unwrap_or_default();
                    p.insert(rel.name.clone(), Value::Array(list));
                }
            } else {
                let by_id: HashMap<String, Row> = children
                    .into_iter()
                    .filter_map(|c| Some((c.get("id")?.as_str()?.to_string(), c)))
                    .collect();
                for p in parents.iter_mut() {
                    let one = parent_key(p).and_then(|k| by_id.get(&k).cloned()).map_or(Value::Null, Value::Object);
                    p.insert(rel.name.clone(), one);
                }
            }
        }
        Ok(())
    }
}

fn select(conn: &Connection, def: &EntityDef, sql: &str, params: Vec<SqlValue>) -> Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params_from_iter(params), |r| rows::from_sql_row(def, r))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

//! Graph queries (`POST /api/query`): one filter per entity, and `include`s that follow the
//! manifest's relations, parsed and checked here before anything is read.
//!
//! ```json
//! {"User": {"where": {"email": {"$like": "a"}}, "$limit": 50,
//!           "include": {"todos": {"where": {"done": 0}, "$limit": 5, "include": {"owner": {}}}}}}
//! ```
//!
//! The store runs one SQL query per level (`IN` over the parent keys), never one per parent.

use serde_json::{Map, Value};

use super::manifest::{AppManifest, RelationDef};
use super::query::Query;
use crate::error::{PlazaError, Result};

/// Deepest chain of includes under a root.
pub const MAX_INCLUDE_DEPTH: usize = 4;
/// Most rows one graph query may return, over every level.
pub const MAX_GRAPH_ROWS: usize = 5_000;
/// Rows per root, and per parent of a to-many include, when `$limit` is absent.
pub const DEFAULT_GRAPH_LIMIT: i64 = 100;
/// Most root entities in one request.
pub const MAX_GRAPH_ROOTS: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct GraphQuery {
    /// In request order: (entity name, what to read).
    pub roots: Vec<(String, Node)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub entity: String,
    /// Filter, order, limit and offset; for a to-many include the limit and offset are per parent.
    pub query: Query,
    pub includes: Vec<Include>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub relation: RelationDef,
    pub node: Node,
}

fn bad(msg: impl Into<String>) -> PlazaError {
    PlazaError::Validation(msg.into())
}

impl GraphQuery {
    pub fn parse(manifest: &AppManifest, body: &Value) -> Result<GraphQuery> {
        let obj = body.as_object().ok_or_else(|| bad("a graph query is an object like {\"User\":{\"where\":{}}}"))?;
        if obj.is_empty() {
            return Err(bad("a graph query names at least one entity"));
        }
        if obj.len() > MAX_GRAPH_ROOTS {
            return Err(bad(format!("a graph query names at most {MAX_GRAPH_ROOTS} entities")));
        }
        let roots = obj
            .iter()
            .map(|(name, spec)| {
                if manifest.entity(name).is_none() {
                    return Err(PlazaError::UnknownEntity(name.clone()));
                }
                Ok((name.clone(), parse_node(manifest, name, spec, 0, None)?))
            })
            .collect::<Result<_>>()?;
        Ok(GraphQuery { roots })
    }
}

/// `relation` is the one this node is reached through (`None` at the root).
fn parse_node(manifest: &AppManifest, entity: &str, spec: &Value, depth: usize, relation: Option<&RelationDef>) -> Result<Node> {
    let def = manifest.entity(entity).ok_or_else(|| PlazaError::UnknownEntity(entity.to_string()))?;
    let obj = spec.as_object().ok_or_else(|| bad(format!("{entity}: expected an object with where, $order, $limit, include")))?;
    let mut filter = match obj.get("where") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(w)) => w.clone(),
        Some(_) => return Err(bad(format!("{entity}: where must be a filter object"))),
    };
    for (key, v) in obj {
        match key.as_str() {
            "where" | "include" => {}
            "$order" | "$limit" | "$offset" => {
                if relation.is_some_and(|r| !r.many) {
                    return Err(bad(format!("{key} does not apply to the to-one include '{}'", relation.map_or("", |r| &r.name))));
                }
                if filter.insert(key.clone(), v.clone()).is_some() {
                    return Err(bad(format!("{entity}: {key} is given both inside and beside where")));
                }
            }
            other => return Err(bad(format!("{entity}: unknown key '{other}' (expected where, $order, $limit, $offset, include)"))),
        }
    }
    let query = Query::parse(def, &Value::Object(filter))?;
    let mut includes = Vec::new();
    match obj.get("include") {
        None | Some(Value::Null) => {}
        Some(Value::Object(inc)) => {
            if !inc.is_empty() && depth >= MAX_INCLUDE_DEPTH {
                return Err(bad(format!("includes nest at most {MAX_INCLUDE_DEPTH} levels deep")));
            }
            for (name, child) in inc {
                let rel = def
                    .relation(name)
                    .ok_or_else(|| bad(format!("{entity} has no relation '{name}'")))?;
                includes.push(Include { relation: rel.clone(), node: parse_node(manifest, &rel.target, child, depth + 1, Some(rel))? });
            }
        }
        Some(_) => return Err(bad(format!("{entity}: include must be an object of relation names"))),
    }
    Ok(Node { entity: entity.to_string(), query, includes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> AppManifest {
        AppManifest::from_json(
            r#"{"entities":[
              {"name":"Todo","fields":[{"name":"title","type":"string"},{"name":"ownerId","type":"id(User)","optional":true}],
               "relations":[{"name":"owner","target":"User","field":"ownerId"}]},
              {"name":"User","fields":[{"name":"email","type":"string"}],
               "relations":[{"name":"todos","target":"Todo","field":"ownerId","many":true}]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn parses_nested_includes() {
        let q = GraphQuery::parse(
            &manifest(),
            &json!({"User":{"where":{"email":"a"},"$limit":3,"include":{"todos":{"$limit":5,"include":{"owner":{}}}}}}),
        )
        .unwrap();
        let (name, root) = &q.roots[0];
        assert_eq!(name, "User");
        assert_eq!(root.query.limit, Some(3));
        assert_eq!(root.includes[0].node.query.limit, Some(5));
        assert_eq!(root.includes[0].node.includes[0].relation.name, "owner");
    }

    #[test]
    fn refuses_what_it_cannot_follow() {
        let m = manifest();
        let err = |v: Value| GraphQuery::parse(&m, &v).unwrap_err().to_string();
        assert!(err(json!({"User":{"include":{"nope":{}}}})).contains("no relation 'nope'"));
        assert!(err(json!({"User":{"where":{"nope":1}}})).contains("unknown field"));
        assert!(err(json!({"User":{"wher":{}}})).contains("unknown key 'wher'"));
        assert!(err(json!({"Todo":{"include":{"owner":{"$limit":2}}}})).contains("to-one"));
        assert!(matches!(GraphQuery::parse(&m, &json!({"Nope":{}})), Err(PlazaError::UnknownEntity(_))));
        // todos → owner → todos → owner is 4 levels; one more is refused.
        let four = json!({"User":{"include":{"todos":{"include":{"owner":{"include":{"todos":{"include":{"owner":{}}}}}}}}}});
        assert!(GraphQuery::parse(&m, &four).is_ok());
        let five = json!({"User":{"include":{"todos":{"include":{"owner":{"include":{"todos":{"include":{"owner":{"include":{"todos":{}}}}}}}}}}}});
        assert!(err(five).contains("at most 4 levels"));
    }
}

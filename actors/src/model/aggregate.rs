//! Aggregates (`POST /api/aggregate/:Entity`): count, sum, avg, min and max, optionally per
//! group, over the rows a filter selects. Parsed and type-checked here; the store runs them
//! as one `SELECT .. GROUP BY` with the read policy ANDed in.
//!
//! `{"count":"*","sum":"estimate","avg":["estimate","priority"],"groupBy":["status"],"where":{..}}`:
//! a measure given one field answers a value, given a list answers `{"field": value}`.

use serde_json::{Map, Value};

use super::manifest::{EntityDef, FieldType};
use super::query::{parse_filter, Filter};
use crate::error::{PlazaError, Result};

/// Most groups one aggregate may answer; more is a 400 naming the limit.
pub const MAX_AGGREGATE_GROUPS: usize = 10_000;
/// Most `groupBy` fields.
pub const MAX_GROUP_BY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

impl AggFn {
    pub fn key(self) -> &'static str {
        match self {
            AggFn::Count => "count",
            AggFn::Sum => "sum",
            AggFn::Avg => "avg",
            AggFn::Min => "min",
            AggFn::Max => "max",
        }
    }
}

/// One output key of each group: a single measure, or one per field (`"sum":["a","b"]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub func: AggFn,
    /// `None`: `count(*)`.
    pub fields: Vec<Option<String>>,
    pub listed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Aggregate {
    pub group_by: Vec<String>,
    pub outputs: Vec<Output>,
    pub filter: Filter,
}

fn bad(msg: impl Into<String>) -> PlazaError {
    PlazaError::Validation(msg.into())
}

impl Aggregate {
    pub fn parse(entity: &EntityDef, body: &Value) -> Result<Aggregate> {
        let obj = body.as_object().ok_or_else(|| bad("an aggregate is an object like {\"count\":\"*\",\"groupBy\":[\"f\"]}"))?;
        let mut agg = Aggregate { group_by: Vec::new(), outputs: Vec::new(), filter: Filter::everything() };
        for (key, v) in obj {
            match key.as_str() {
                "where" => {
                    let w = v.as_object().ok_or_else(|| bad("where must be a filter object"))?;
                    agg.filter = parse_filter(entity, w)?;
                }
                "groupBy" => {
                    agg.group_by = names(key, v)?;
                    if agg.group_by.len() > MAX_GROUP_BY {
                        return Err(bad(format!("groupBy takes at most {MAX_GROUP_BY} fields")));
                    }
                    for f in &agg.group_by {
                        check_type(entity, "groupBy", f, |t| t != &FieldType::Json)?;
                    }
                }
                "count" => {
                    let fields = match v {
                        Value::String(s) if s == "*" => vec![None],
                        Value::Bool(true) => vec![None],
                        _ => names(key, v)?.into_iter().map(Some).collect(),
                    };
                    for f in fields.iter().flatten() {
                        check_type(entity, "count", f, |_| true)?;
                    }
                    agg.outputs.push(Output { func: AggFn::Count, fields, listed: v.is_array() });
                }
                "sum" | "avg" | "min" | "max" => {
                    let func = match key.as_str() {
                        "sum" => AggFn::Sum,
                        "avg" => AggFn::Avg,
                        "min" => AggFn::Min,
                        _ => AggFn::Max,
                    };
                    let fields = names(key, v)?;
                    for f in &fields {
                        if matches!(func, AggFn::Sum | AggFn::Avg) {
                            check_type(entity, key, f, |t| matches!(t, FieldType::Int | FieldType::Float | FieldType::Bool))?;
                        } else {
                            check_type(entity, key, f, |t| t != &FieldType::Json)?;
                        }
                    }
                    agg.outputs.push(Output { func, fields: fields.into_iter().map(Some).collect(), listed: v.is_array() });
                }
                other => {
                    return Err(bad(format!("unknown key '{other}' (expected count, sum, avg, min, max, groupBy, where)")))
                }
            }
        }
        if agg.outputs.is_empty() {
            agg.outputs.push(Output { func: AggFn::Count, fields: vec![None], listed: false });
        }
        Ok(agg)
    }

    /// `SELECT <group keys>, <measures> FROM .. WHERE <where> GROUP BY .. ORDER BY ..` with the
    /// given WHERE (the filter already ANDed with the read policy); one row past the group cap.
    pub fn to_sql(&self, table: &str, where_sql: &str) -> String {
        let keys: Vec<String> = self.group_by.iter().map(|f| format!("\"{f}\"")).collect();
        let mut cols = keys.clone();
        for out in &self.outputs {
            for f in &out.fields {
                let arg = f.as_ref().map_or("*".to_string(), |f| format!("\"{f}\""));
                cols.push(format!("{}({arg})", out.func.key()));
            }
        }
        let grouping = if keys.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {k} ORDER BY {k}", k = keys.join(", "))
        };
        format!("SELECT {} FROM \"{table}\" WHERE {where_sql}{grouping} LIMIT {}", cols.join(", "), MAX_AGGREGATE_GROUPS + 1)
    }
}

fn names(key: &str, v: &Value) -> Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_string).ok_or_else(|| bad(format!("{key} takes field names"))))
            .collect(),
        _ => Err(bad(format!("{key} takes a field name or a non-empty list of them"))),
    }
}

fn check_type(entity: &EntityDef, what: &str, field: &str, ok: impl Fn(&FieldType) -> bool) -> Result<()> {
    match entity.field(field) {
        Some(def) if ok(&def.ty) => Ok(()),
        Some(def) => Err(bad(format!("{what} cannot use {}.{field} ({})", entity.name, def.ty))),
        // System columns are text: fine to count, group and take min/max of, not to add up.
        None if entity.has_column(field) && ok(&FieldType::String) => Ok(()),
        None if entity.has_column(field) => Err(bad(format!("{what} cannot use {field} (text)"))),
        None => Err(bad(format!("unknown field '{field}' for {}", entity.name))),
    }
}

/// The JSON object of one result row: `{"key":{..},"count":..,"sum":..}`.
pub fn group_json(agg: &Aggregate, key: Map<String, Value>, mut measures: impl Iterator<Item = Value>) -> Value {
    let mut out = Map::new();
    out.insert("key".into(), Value::Object(key));
    for o in &agg.outputs {
        let v = if o.listed {
            let mut m = Map::new();
            for f in &o.fields {
                m.insert(f.clone().unwrap_or_else(|| "*".into()), measures.next().unwrap_or(Value::Null));
            }
            Value::Object(m)
        } else {
            measures.next().unwrap_or(Value::Null)
        };
        out.insert(o.func.key().into(), v);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::AppManifest;
    use serde_json::json;

    fn todo() -> EntityDef {
        AppManifest::from_json(
            r#"{"entities":[{"name":"Todo","fields":[{"name":"title","type":"string"},{"name":"n","type":"int"},
               {"name":"meta","type":"json","optional":true}]}]}"#,
        )
        .unwrap()
        .entities
        .remove(0)
    }

    #[test]
    fn builds_one_grouped_select() {
        let a = Aggregate::parse(&todo(), &json!({"count":"*","sum":"n","max":["n","title"],"groupBy":"title"})).unwrap();
        assert_eq!(
            a.to_sql("Todo", "1"),
            format!("SELECT \"title\", count(*), sum(\"n\"), max(\"n\"), max(\"title\") FROM \"Todo\" WHERE 1 GROUP BY \"title\" ORDER BY \"title\" LIMIT {}", MAX_AGGREGATE_GROUPS + 1)
        );
        let plain = Aggregate::parse(&todo(), &json!({})).unwrap();
        assert_eq!(plain.to_sql("Todo", "1"), format!("SELECT count(*) FROM \"Todo\" WHERE 1 LIMIT {}", MAX_AGGREGATE_GROUPS + 1));
    }

    #[test]
    fn refuses_bad_fields_and_types() {
        for body in [
            json!({"sum":"title"}),
            json!({"avg":"meta"}),
            json!({"groupBy":["meta"]}),
            json!({"min":"nope"}),
            json!({"count":5}),
            json!({"having":{}}),
            json!({"where":{"n":{"$regex":1}}}),
            json!({"sum":"id"}),
            json!({"groupBy":[]}),
        ] {
            assert!(Aggregate::parse(&todo(), &body).is_err(), "{body}");
        }
    }
}

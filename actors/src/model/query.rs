//! The one filter language (API.md "Queries"). A filter is parsed once against an entity, then
//! either compiled to parameterised SQL (values are never spliced into the text) or evaluated
//! against a JSON row in memory (live subscriptions). Both follow SQLite's semantics, including
//! NULL: a comparison with NULL matches nothing, and neither does its negation.

use std::cmp::Ordering;
use std::collections::HashMap;

use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value};

use crate::error::{PlazaError, Result};
use super::manifest::{EntityDef, FieldType};
use super::rows::to_sql;
use super::search::SearchText;

/// Most rows one list or query returns, whatever the client asks.
pub const MAX_LIMIT: i64 = 1000;
pub const DEFAULT_LIST_LIMIT: i64 = 100;
/// Most comparisons one filter may hold. SQLite refuses expression trees deeper than 1000 and
/// an `$or` of n terms is n deep, so without this a long filter is a 500 instead of a 400.
pub const MAX_FILTER_TERMS: usize = 500;
/// Most values one filter may bind (comparisons plus every `$in` value), well under SQLite's
/// 32766 parameters per statement, leaving room for the policy's own.
pub const MAX_FILTER_VALUES: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    Cmp { field: String, op: CmpOp, value: SqlValue },
    In { field: String, values: Vec<SqlValue> },
    Like { field: String, pattern: String },
    /// A json field holding an array that contains the value (policies: `auth.userId in data.members`).
    Contains { field: String, value: SqlValue },
    /// `$search`: every word occurs in one of the entity's search text fields (FTS5 in SQL).
    Search { entity: String, fields: Vec<String>, text: SearchText },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Asc,
    Desc,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub filter: Filter,
    pub order: Vec<(String, Direction)>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
}

impl Filter {
    pub fn everything() -> Filter {
        Filter::All(Vec::new())
    }
}

fn bad(msg: impl Into<String>) -> PlazaError {
    PlazaError::Validation(msg.into())
}

impl Query {
    /// Parses a filter object with optional top-level `$order`, `$limit`, `$offset`.
    pub fn parse(entity: &EntityDef, v: &Value) -> Result<Query> {
        let obj = v.as_object().ok_or_else(|| bad("a filter must be a JSON object"))?;
        let mut q = Query { filter: Filter::everything(), order: Vec::new(), limit: None, offset: None };
        let mut rest = Map::new();
        for (k, v) in obj {
            match k.as_str() {
                "$order" => q.order = parse_order(entity, v)?,
                "$limit" => q.limit = Some(parse_count("$limit", v)?),
                "$offset" => q.offset = Some(parse_count("$offset", v)?),
                _ => {
                    rest.insert(k.clone(), v.clone());
                }
            }
        }
        q.filter = parse_filter(entity, &rest)?;
        Ok(q)
    }

    pub fn limit_or(&self, default: i64) -> i64 {
        self.limit.unwrap_or(default).clamp(0, MAX_LIMIT)
    }

    /// List query parameters → the same query: `limit`, `offset`, `order`, `filter` (filter
    /// JSON), and `field=value` equality on any other parameter, typed by the field.
    pub fn from_params(entity: &EntityDef, params: &HashMap<String, String>) -> Result<Query> {
        let mut filter = Map::new();
        if let Some(f) = params.get("filter") {
            let parsed: Value = serde_json::from_str(f).map_err(|e| bad(format!("filter is not JSON: {e}")))?;
            filter = parsed.as_object().cloned().ok_or_else(|| bad("filter must be a JSON object"))?;
        }
        for (name, raw) in params {
            if matches!(name.as_str(), "limit" | "offset" | "order" | "filter") {
                continue;
            }
            let ty = match entity.field(name) {
                Some(f) => Some(&f.ty),
                None if entity.has_column(name) => None,
                None => return Err(bad(format!("unknown field '{name}' for {}", entity.name))),
            };
            filter.insert(name.clone(), param_value(name, ty, raw)?);
        }
        let mut q = Query::parse(entity, &Value::Object(filter))?;
        if let Some(l) = params.get("limit") {
            q.limit = Some(parse_number::<i64>("limit", l)?.clamp(0, MAX_LIMIT));
        }
        if let Some(o) = params.get("offset") {
            q.offset = Some(parse_number::<i64>("offset", o)?.max(0));
        }
        if let Some(o) = params.get("order") {
            q.order = parse_order(entity, &Value::String(o.clone()))?;
        }
        Ok(q)
    }
}

/// A query-string value typed by its field: `?done=0`, `?n=5`, `?title=milk`.
fn param_value(name: &str, ty: Option<&FieldType>, raw: &str) -> Result<Value> {
    let bad_value = || bad(format!("{name}: '{raw}' does not fit the field's type"));
    Ok(match ty {
        Some(FieldType::Int) => Value::from(raw.parse::<i64>().map_err(|_| bad_value())?),
        Some(FieldType::Float) => raw.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).ok_or_else(bad_value)?,
        Some(FieldType::Bool) => match raw {
            "1" | "true" => Value::from(1),
            "0" | "false" => Value::from(0),
            _ => return Err(bad_value()),
        },
        _ if raw == "null" => Value::Null,
        _ => Value::from(raw),
    })
}

/// A number in a query string, e.g. `?limit=10`.
pub fn parse_number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.parse().map_err(|_| bad(format!("{name} must be a number, got '{v}'")))
}

fn parse_count(name: &str, v: &Value) -> Result<i64> {
    v.as_i64().filter(|n| *n >= 0).ok_or_else(|| bad(format!("{name} must be a non-negative integer")))
}

/// `{"f":"asc"}`, `[["f","desc"]]`, `"f"` or `"-f"`.
pub fn parse_order(entity: &EntityDef, v: &Value) -> Result<Vec<(String, Direction)>> {
    let dir = |d: &Value| match d.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("asc") => Ok(Direction::Asc),
        Some("desc") => Ok(Direction::Desc),
        _ => Err(bad("order direction must be \"asc\" or \"desc\"")),
    };
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (f, d) in m {
                out.push((f.clone(), dir(d)?));
            }
        }
        Value::Array(items) => {
            for item in items {
                match item.as_array().map(Vec::as_slice) {
                    Some([f, d]) => out.push((f.as_str().unwrap_or_default().to_string(), dir(d)?)),
                    _ => return Err(bad("$order entries must be [field, \"asc\"|\"desc\"]")),
                }
            }
        }
        Value::String(s) => out.extend(parse_order_param(s)?),
        _ => return Err(bad("$order must be an object like {\"field\":\"asc\"}")),
    }
    for (f, _) in &out {
        if !entity.has_column(f) {
            return Err(bad(format!("cannot order by unknown field '{f}'")));
        }
    }
    Ok(out)
}

/// The `order` query parameter: `title`, `-title`, `title:desc`, comma separated. A direction
/// other than asc/desc is refused, as it is in `$order`.
pub fn parse_order_param(s: &str) -> Result<Vec<(String, Direction)>> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            if let Some(f) = p.strip_prefix('-') {
                Ok((f.to_string(), Direction::Desc))
            } else if let Some((f, d)) = p.split_once([':', '.']) {
                match d.to_ascii_lowercase().as_str() {
                    "asc" => Ok((f.to_string(), Direction::Asc)),
                    "desc" => Ok((f.to_string(), Direction::Desc)),
                    _ => Err(bad(format!("order direction of '{f}' must be asc or desc, got '{d}'"))),
                }
            } else {
                Ok((p.to_string(), Direction::Asc))
            }
        })
        .collect()
}

fn field_type<'e>(entity: &'e EntityDef, name: &str) -> Result<Option<&'e FieldType>> {
    if !entity.has_column(name) {
        return Err(bad(format!("unknown field '{name}' for {}", entity.name)));
    }
    Ok(entity.field(name).map(|f| &f.ty))
}

/// A filter value → the SQLite value it is compared with, checked against the field's type.
fn operand(entity: &EntityDef, field: &str, v: &Value) -> Result<SqlValue> {
    match entity.field(field) {
        Some(def) => to_sql(entity, def, v),
        None => match v {
            Value::String(s) => Ok(SqlValue::Text(s.clone())),
            Value::Null => Ok(SqlValue::Null),
            _ => Err(bad(format!("{field} compares with a string"))),
        },
    }
}

pub fn parse_filter(entity: &EntityDef, obj: &Map<String, Value>) -> Result<Filter> {
    let filter = parse_filter_object(entity, obj)?;
    let (terms, values) = weigh(&filter);
    if terms > MAX_FILTER_TERMS {
        return Err(bad(format!("a filter may hold at most {MAX_FILTER_TERMS} conditions (this one has {terms})")));
    }
    if values > MAX_FILTER_VALUES {
        return Err(bad(format!("a filter may hold at most {MAX_FILTER_VALUES} values (this one has {values})")));
    }
    Ok(filter)
}

/// Conditions and bound values in a filter.
fn weigh(filter: &Filter) -> (usize, usize) {
    match filter {
        Filter::All(parts) | Filter::Any(parts) => {
            parts.iter().map(weigh).fold((0, 0), |(t, v), (pt, pv)| (t + pt, v + pv))
        }
        Filter::Not(inner) => weigh(inner),
        Filter::In { values, .. } => (1, values.len()),
        Filter::Cmp { .. } | Filter::Like { .. } | Filter::Contains { .. } | Filter::Search { .. } => (1, 1),
    }
}

fn parse_filter_object(entity: &EntityDef, obj: &Map<String, Value>) -> Result<Filter> {
    let mut parts = Vec::new();
    for (key, v) in obj {
        match key.as_str() {
            "$not" => {
                let inner = v.as_object().ok_or_else(|| bad("$not takes a filter object"))?;
                parts.push(Filter::Not(Box::new(parse_filter_object(entity, inner)?)));
            }
            "$and" | "$or" => {
                let items = v.as_array().ok_or_else(|| bad(format!("{key} takes an array of filters")))?;
                let subs = items
                    .iter()
                    .map(|i| {
                        i.as_object()
                            .ok_or_else(|| bad(format!("{key} takes an array of filters")))
                            .and_then(|o| parse_filter_object(entity, o))
                    })
                    .collect::<Result<Vec<_>>>()?;
                parts.push(if key == "$and" { Filter::All(subs) } else { Filter::Any(subs) });
            }
            "$search" => parts.push(search_filter(entity, v)?),
            k if k.starts_with('$') => return Err(bad(format!("unknown operator '{k}'"))),
            field => {
                field_type(entity, field)?;
                parts.push(parse_condition(entity, field, v)?);
            }
        }
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::All(parts) })
}

fn parse_condition(entity: &EntityDef, field: &str, v: &Value) -> Result<Filter> {
    let ops = match v {
        Value::Object(ops) if ops.keys().all(|k| k.starts_with('$')) && !ops.is_empty() => ops,
        _ => return Ok(Filter::Cmp { field: field.into(), op: CmpOp::Eq, value: operand(entity, field, v)? }),
    };
    let mut parts = Vec::new();
    for (op, arg) in ops {
        let cmp = |op| -> Result<Filter> {
            Ok(Filter::Cmp { field: field.into(), op, value: operand(entity, field, arg)? })
        };
        parts.push(match op.as_str() {
            "$eq" => cmp(CmpOp::Eq)?,
            "$ne" => cmp(CmpOp::Ne)?,
            "$gt" => cmp(CmpOp::Gt)?,
            "$gte" => cmp(CmpOp::Gte)?,
            "$lt" => cmp(CmpOp::Lt)?,
            "$lte" => cmp(CmpOp::Lte)?,
            "$in" => {
                let items = arg.as_array().ok_or_else(|| bad("$in takes an array"))?;
                if items.len() > MAX_LIMIT as usize {
                    return Err(bad(format!("$in takes at most {MAX_LIMIT} values")));
                }
                let values = items.iter().map(|i| operand(entity, field, i)).collect::<Result<_>>()?;
                Filter::In { field: field.into(), values }
            }
            "$like" => {
                let s = arg.as_str().ok_or_else(|| bad("$like takes a string"))?;
                Filter::Like { field: field.into(), pattern: like_pattern(s) }
            }
            "$not" => Filter::Not(Box::new(parse_condition(entity, field, arg)?)),
            other => return Err(bad(format!("unknown operator '{other}'"))),
        });
    }
    Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::All(parts) })
}

/// `{"$search":"text"}` on an entity that declares `search`.
fn search_filter(entity: &EntityDef, v: &Value) -> Result<Filter> {
    let def = entity.search.as_ref().ok_or_else(|| bad(format!("{} declares no full-text search", entity.name)))?;
    let text = v.as_str().ok_or_else(|| bad("$search takes a string"))?;
    Ok(Filter::Search { entity: entity.name.clone(), fields: def.text.clone(), text: SearchText::parse(text)? })
}

/// The integer key a searchable entity's table carries for its FTS5 index (the index's rowid).
pub const SEARCH_ROWID: &str = "_plaza_rid";

/// The FTS5 table behind an entity's `search` (entity names cannot start with `_`).
pub fn fts_table(entity: &str) -> String {
    format!("_plaza_fts_{entity}")
}

/// A pattern with `%` is an SQL LIKE pattern as written; anything else is a substring.
fn like_pattern(s: &str) -> String {
    if s.contains('%') {
        s.to_string()
    } else {
        let escaped = s.replace('\\', "\\\\").replace('_', "\\_");
        format!("%{escaped}%")
    }
}

// ---------------------------------------------------------------- SQL

/// A WHERE clause (without the keyword; `1` when empty) and its parameters.
pub fn to_sql_where(filter: &Filter, params: &mut Vec<SqlValue>) -> String {
    match filter {
        Filter::All(parts) if parts.is_empty() => "1".into(),
        Filter::Any(parts) if parts.is_empty() => "0".into(),
        Filter::All(parts) => join(parts, " AND ", params),
        Filter::Any(parts) => join(parts, " OR ", params),
        Filter::Not(inner) => format!("NOT ({})", to_sql_where(inner, params)),
        Filter::Cmp { field, op, value: SqlValue::Null } => match op {
            CmpOp::Eq => format!("\"{field}\" IS NULL"),
            CmpOp::Ne => format!("\"{field}\" IS NOT NULL"),
            _ => "0".into(),
        },
        Filter::Cmp { field, op, value } => {
            params.push(value.clone());
            let sym = match op {
                CmpOp::Eq => "=",
                CmpOp::Ne => "!=",
                CmpOp::Gt => ">",
                CmpOp::Gte => ">=",
                CmpOp::Lt => "<",
                CmpOp::Lte => "<=",
            };
            format!("\"{field}\" {sym} ?")
        }
        Filter::In { values, .. } if values.is_empty() => "0".into(),
        Filter::In { field, values } => {
            params.extend(values.iter().cloned());
            format!("\"{field}\" IN ({})", vec!["?"; values.len()].join(","))
        }
        Filter::Like { field, pattern } => {
            params.push(SqlValue::Text(pattern.clone()));
            format!("\"{field}\" LIKE ? ESCAPE '\\'")
        }
        Filter::Search { entity, text, .. } => {
            params.push(SqlValue::Text(text.fts_query()));
            format!(
                "\"{SEARCH_ROWID}\" IN (SELECT rowid FROM \"{fts}\" WHERE \"{fts}\" MATCH ?)",
                fts = fts_table(entity),
            )
        }
        Filter::Contains { field, value } => {
            params.push(value.clone());
            format!(
                "EXISTS (SELECT 1 FROM json_each(CASE WHEN json_valid(\"{field}\") THEN \"{field}\" ELSE '[]' END) WHERE value = ?)"
            )
        }
    }
}

fn join(parts: &[Filter], sep: &str, params: &mut Vec<SqlValue>) -> String {
    parts.iter().map(|p| format!("({})", to_sql_where(p, params))).collect::<Vec<_>>().join(sep)
}

/// `ORDER BY ...` for the query, always ending in `id` so pages are stable.
pub fn to_sql_order(order: &[(String, Direction)]) -> String {
    let mut terms: Vec<String> = order
        .iter()
        .map(|(f, d)| format!("\"{f}\" {}", if *d == Direction::Desc { "DESC" } else { "ASC" }))
        .collect();
    if !order.iter().any(|(f, _)| f == "id") {
        terms.push("\"id\" ASC".into());
    }
    format!("ORDER BY {}", terms.join(", "))
}

// ---------------------------------------------------------------- in memory

impl Filter {
    /// Whether a row (as the API returns it) matches, with SQL's NULL semantics.
    pub fn matches(&self, row: &Map<String, Value>) -> bool {
        self.eval(row) == Some(true)
    }

    fn eval(&self, row: &Map<String, Value>) -> Option<bool> {
        match self {
            Filter::All(parts) => three_valued(parts, row, false),
            Filter::Any(parts) => three_valued(parts, row, true),
            Filter::Not(inner) => inner.eval(row).map(|b| !b),
            Filter::Cmp { field, op, value } => {
                let left = cell(row, field);
                match (op, value, &left) {
                    (CmpOp::Eq, SqlValue::Null, _) => Some(left == SqlValue::Null),
                    (CmpOp::Ne, SqlValue::Null, _) => Some(left != SqlValue::Null),
                    (_, SqlValue::Null, _) | (_, _, SqlValue::Null) => None,
                    _ => {
                        let ord = compare(&left, value);
                        Some(match op {
                            CmpOp::Eq => ord == Ordering::Equal,
                            CmpOp::Ne => ord != Ordering::Equal,
                            CmpOp::Gt => ord == Ordering::Greater,
                            CmpOp::Gte => ord != Ordering::Less,
                            CmpOp::Lt => ord == Ordering::Less,
                            CmpOp::Lte => ord != Ordering::Greater,
                        })
                    }
                }
            }
            Filter::In { field, values } => {
                let left = cell(row, field);
                if left == SqlValue::Null {
                    return if values.is_empty() { Some(false) } else { None };
                }
                Some(values.iter().any(|v| compare(&left, v) == Ordering::Equal))
            }
            Filter::Contains { field, value } => match row.get(field) {
                Some(Value::Array(items)) => Some(items.iter().any(|i| {
                    let item = cell(&Map::from_iter([("v".to_string(), i.clone())]), "v");
                    compare(&item, value) == Ordering::Equal && item != SqlValue::Null
                })),
                _ => Some(false),
            },
            Filter::Search { fields, text, .. } => {
                Some(text.matches(fields.iter().filter_map(|f| row.get(f).and_then(Value::as_str))))
            }
            Filter::Like { field, pattern } => match cell(row, field) {
                SqlValue::Null => None,
                SqlValue::Text(s) => Some(like(pattern, &s)),
                other => Some(like(pattern, &sql_text(&other))),
            },
        }
    }
}

/// SQL's AND (`decisive` false) and OR (`decisive` true) over unknowns: one decisive part
/// decides; otherwise any unknown part leaves the whole unknown.
fn three_valued(parts: &[Filter], row: &Map<String, Value>, decisive: bool) -> Option<bool> {
    let mut unknown = false;
    for p in parts {
        match p.eval(row) {
            Some(b) if b == decisive => return Some(decisive),
            None => unknown = true,
            Some(_) => {}
        }
    }
    if unknown { None } else { Some(!decisive) }
}

/// A JSON cell back to the SQLite value it was stored as.
fn cell(row: &Map<String, Value>, field: &str) -> SqlValue {
    match row.get(field) {
        None | Some(Value::Null) => SqlValue::Null,
        Some(Value::Bool(b)) => SqlValue::Integer(*b as i64),
        Some(Value::Number(n)) => n.as_i64().map(SqlValue::Integer).unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap_or(0.0))),
        Some(Value::String(s)) => SqlValue::Text(s.clone()),
        Some(other) => SqlValue::Text(other.to_string()),
    }
}

fn sql_text(v: &SqlValue) -> String {
    match v {
        SqlValue::Integer(i) => i.to_string(),
        SqlValue::Real(f) => f.to_string(),
        SqlValue::Text(s) => s.clone(),
        _ => String::new(),
    }
}

/// SQLite's cross-type order: numbers < text; numbers compare numerically.
fn compare(a: &SqlValue, b: &SqlValue) -> Ordering {
    use SqlValue::*;
    let num = |v: &SqlValue| match v {
        Integer(i) => Some(*i as f64),
        Real(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (Integer(x), Integer(y)) => x.cmp(y),
        (Text(x), Text(y)) => x.cmp(y),
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        },
    }
}

/// SQLite LIKE with `ESCAPE '\'`: `%` any run, `_` one character, ASCII case-insensitive.
fn like(pattern: &str, text: &str) -> bool {
    enum Tok {
        AnyRun,
        AnyOne,
        Lit(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '%' => Tok::AnyRun,
            '_' => Tok::AnyOne,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let text: Vec<char> = text.chars().collect();
    // Greedy match that backtracks to the last `%`.
    let (mut p, mut t, mut resume) = (0, 0, None);
    while t < text.len() {
        match toks.get(p) {
            Some(Tok::AnyRun) => {
                resume = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(Tok::AnyOne) => {
                p += 1;
                t += 1;
                continue;
            }
            Some(Tok::Lit(c)) if c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match resume {
            Some((rp, rt)) => {
                resume = Some((rp, rt + 1));
                p = rp;
                t = rt + 1;
            }
            None => return false,
        }
    }
    toks[p..].iter().all(|t| matches!(t, Tok::AnyRun))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::AppManifest;
    use serde_json::json;

    fn todo() -> EntityDef {
        AppManifest::from_json(
            r#"{"entities":[{"name":"Todo","fields":[{"name":"title","type":"string"},{"name":"done","type":"bool"},
            {"name":"n","type":"int","optional":true}]}]}"#,
        )
        .unwrap()
        .entities
        .remove(0)
    }

    fn q(v: Value) -> Query {
        Query::parse(&todo(), &v).unwrap()
    }

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn compiles_to_parameterised_sql() {
        let query = q(json!({"title":{"$like":"mil"},"n":{"$gte":2,"$lt":9},"done":false,"$order":{"n":"desc"}}));
        let mut params = Vec::new();
        let sql = to_sql_where(&query.filter, &mut params);
        assert_eq!(sql, "(\"title\" LIKE ? ESCAPE '\\') AND ((\"n\" >= ?) AND (\"n\" < ?)) AND (\"done\" = ?)");
        assert_eq!(params, vec![SqlValue::Text("%mil%".into()), SqlValue::Integer(2), SqlValue::Integer(9), SqlValue::Integer(0)]);
        assert_eq!(to_sql_order(&query.order), "ORDER BY \"n\" DESC, \"id\" ASC");
    }

    #[test]
    fn rejects_unknown_fields_and_operators() {
        assert!(Query::parse(&todo(), &json!({"nope":1})).is_err());
        assert!(Query::parse(&todo(), &json!({"n":{"$regex":"x"}})).is_err());
        assert!(Query::parse(&todo(), &json!({"n":"text"})).is_err());
        assert!(Query::parse(&todo(), &json!({"$where":"1"})).is_err());
    }

    #[test]
    fn evaluates_in_memory_like_sqlite() {
        let r = row(json!({"id":"a","title":"Buy Milk","done":0,"n":null}));
        assert!(q(json!({"title":{"$like":"milk"}})).filter.matches(&r));
        assert!(q(json!({"title":{"$like":"Buy%"}})).filter.matches(&r));
        assert!(!q(json!({"title":{"$like":"Buy_"}})).filter.matches(&r));
        assert!(q(json!({"done":false})).filter.matches(&r));
        assert!(!q(json!({"done":true})).filter.matches(&r));
        // NULL: neither a comparison nor its negation matches.
        assert!(!q(json!({"n":{"$gt":1}})).filter.matches(&r));
        assert!(!q(json!({"n":{"$not":{"$gt":1}}})).filter.matches(&r));
        assert!(q(json!({"n":null})).filter.matches(&r));
        assert!(!q(json!({"title":{"$in":[]}})).filter.matches(&r));
        assert!(q(json!({"title":{"$in":["x","Buy Milk"]}})).filter.matches(&r));
        assert!(q(json!({"$not":{"title":"x"}})).filter.matches(&r));
        assert!(q(json!({"$or":[{"title":"x"},{"done":0}]})).filter.matches(&r));
        assert!(q(json!({})).filter.matches(&r));
    }
}

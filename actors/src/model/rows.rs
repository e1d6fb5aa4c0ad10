//! Rows in and out: validating client JSON against an entity's fields, and turning SQLite
//! values back into the JSON a client sees (bool as 0/1, json fields parsed).

use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value};

use crate::error::{PlazaError, Result};
use super::manifest::{EntityDef, FieldDef, FieldType, SYSTEM_FIELDS};

pub type Row = Map<String, Value>;

/// Longest client-chosen row id; ids end up in URLs, logs and the change log.
pub const MAX_ID_LEN: usize = 128;

/// Column values for an insert, validated: every required field present, no unknown field.
#[derive(Debug, Clone)]
pub struct NewRow {
    pub id: Option<String>,
    pub values: Vec<(String, SqlValue)>,
    /// Kept from an import so an export/import round trip preserves timestamps.
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

pub fn validate_insert(entity: &EntityDef, body: &Value, keep_timestamps: bool) -> Result<NewRow> {
    let obj = as_object(body)?;
    let id = match obj.get("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(validate_id(v)?),
    };
    let stamp = |name: &str| -> Result<Option<String>> {
        match obj.get(name) {
            Some(Value::String(s)) if keep_timestamps => Ok(Some(parse_datetime(name, s)?)),
            _ => Ok(None),
        }
    };
    let (created_at, updated_at) = (stamp("createdAt")?, stamp("updatedAt")?);
    reject_unknown(entity, obj)?;
    let mut values = Vec::with_capacity(entity.fields.len());
    for field in &entity.fields {
        match obj.get(&field.name) {
            None | Some(Value::Null) if !field.optional => {
                return Err(PlazaError::Validation(format!(
                    "{}.{} is required",
                    entity.name, field.name
                )))
            }
            None => {}
            Some(v) => values.push((field.name.clone(), to_sql(entity, field, v)?)),
        }
    }
    Ok(NewRow { id, values, created_at, updated_at })
}

/// Column values for a partial update. System fields may be echoed back (a client PATCHing a
/// row it fetched) but are never written.
pub fn validate_patch(entity: &EntityDef, body: &Value) -> Result<Vec<(String, SqlValue)>> {
    let obj = as_object(body)?;
    reject_unknown(entity, obj)?;
    let mut values = Vec::new();
    for (name, v) in obj {
        let Some(field) = entity.field(name) else { continue }; // system fields: never written

        if v.is_null() && !field.optional {
            return Err(PlazaError::Validation(format!(
                "{}.{} is required and cannot be null",
                entity.name, name
            )));
        }
        values.push((name.clone(), to_sql(entity, field, v)?));
    }
    Ok(values)
}

pub fn validate_id(v: &Value) -> Result<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control) => {
            Ok(s.clone())
        }
        _ => Err(PlazaError::Validation(format!(
            "id must be a non-empty string of at most {MAX_ID_LEN} characters"
        ))),
    }
}

fn as_object(body: &Value) -> Result<&Map<String, Value>> {
    body.as_object()
        .ok_or_else(|| PlazaError::Validation("the body must be a JSON object".into()))
}

fn reject_unknown(entity: &EntityDef, obj: &Map<String, Value>) -> Result<()> {
    match obj.keys().find(|k| !entity.has_column(k)) {
        Some(k) => Err(PlazaError::Validation(format!("unknown field '{k}' for {}", entity.name))),
        None => Ok(()),
    }
}

fn type_error(entity: &EntityDef, field: &FieldDef, v: &Value) -> PlazaError {
    PlazaError::Validation(format!(
        "{}.{} must be of type {}, got {}",
        entity.name,
        field.name,
        field.ty,
        json_kind(v)
    ))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One JSON value → the SQLite value stored for `field`.
pub fn to_sql(entity: &EntityDef, field: &FieldDef, v: &Value) -> Result<SqlValue> {
    if v.is_null() {
        return Ok(SqlValue::Null);
    }
    let bad = || type_error(entity, field, v);
    Ok(match &field.ty {
        FieldType::String | FieldType::Id(_) => SqlValue::Text(v.as_str().ok_or_else(bad)?.to_string()),
        FieldType::Int => SqlValue::Integer(v.as_i64().ok_or_else(bad)?),
        FieldType::Float => SqlValue::Real(v.as_f64().ok_or_else(bad)?),
        FieldType::Bool => SqlValue::Integer(match v {
            Value::Bool(b) => *b as i64,
            Value::Number(n) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => n.as_i64().unwrap_or(0),
            _ => return Err(bad()),
        }),
        FieldType::Datetime => SqlValue::Text(parse_datetime(&field.name, v.as_str().ok_or_else(bad)?)?),
        FieldType::Json => SqlValue::Text(v.to_string()),
    })
}

/// Datetimes are stored as RFC 3339 UTC so that text order is time order.
fn parse_datetime(name: &str, s: &str) -> Result<String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&chrono::Utc).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .map_err(|_| PlazaError::Validation(format!("{name} must be an RFC 3339 datetime, got '{s}'")))
}

/// A stored SQLite value → the JSON a client sees for `ty`.
pub fn to_json(ty: Option<&FieldType>, v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::from(i),
        SqlValue::Real(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
        SqlValue::Text(s) if ty == Some(&FieldType::Json) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
        SqlValue::Text(s) => Value::String(s),
        SqlValue::Blob(_) => Value::Null,
    }
}

/// The full column list of an entity's table, in the order rows are returned.
pub fn columns(entity: &EntityDef) -> Vec<&str> {
    SYSTEM_FIELDS.iter().copied().chain(entity.fields.iter().map(|f| f.name.as_str())).collect()
}

/// `"id","createdAt",...` for a SELECT of exactly [`columns`].
pub fn select_list(entity: &EntityDef) -> String {
    columns(entity).iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(",")
}

/// Reads a row selected with [`select_list`].
pub fn from_sql_row(entity: &EntityDef, r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let mut row = Map::with_capacity(entity.fields.len() + 3);
    for (i, name) in SYSTEM_FIELDS.iter().enumerate() {
        row.insert((*name).to_string(), to_json(None, r.get::<_, SqlValue>(i)?));
    }
    for (i, f) in entity.fields.iter().enumerate() {
        row.insert(f.name.clone(), to_json(Some(&f.ty), r.get::<_, SqlValue>(i + 3)?));
    }
    Ok(row)
}

/// A stored value as read back into a row (strings and numbers as they are) → its SQLite
/// value, for comparing a row's cell with a stored value. Objects and arrays compare as text.
pub fn json_to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(*b as i64),
        Value::Number(n) => n.as_i64().map(SqlValue::Integer).unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap_or(0.0))),
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

/// Inverse of [`to_json`] for a value already validated: used to build the change-log row of an
/// insert without reading it back.
pub fn sql_to_row_value(entity: &EntityDef, name: &str, v: &SqlValue) -> Value {
    to_json(entity.field(name).map(|f| &f.ty), v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::AppManifest;
    use serde_json::json;

    fn todo() -> EntityDef {
        AppManifest::from_json(
            r#"{"entities":[{"name":"Todo","fields":[{"name":"title","type":"string"},{"name":"done","type":"bool"},
            {"name":"meta","type":"json","optional":true},{"name":"due","type":"datetime","optional":true}]}]}"#,
        )
        .unwrap()
        .entities
        .remove(0)
    }

    #[test]
    fn insert_checks_required_unknown_and_types() {
        let e = todo();
        assert!(validate_insert(&e, &json!({"title":"a","done":false}), false).is_ok());
        let missing = validate_insert(&e, &json!({"done":true}), false).unwrap_err();
        assert!(missing.to_string().contains("Todo.title is required"));
        let unknown = validate_insert(&e, &json!({"title":"a","done":true,"x":1}), false).unwrap_err();
        assert!(unknown.to_string().contains("unknown field 'x'"));
        let wrong = validate_insert(&e, &json!({"title":5,"done":true}), false).unwrap_err();
        assert!(wrong.to_string().contains("must be of type string"));
        assert!(validate_insert(&e, &json!({"title":"a","done":2}), false).is_err());
        assert!(validate_insert(&e, &json!({"title":"a","done":1,"due":"yesterday"}), false).is_err());
    }

    #[test]
    fn bool_is_stored_as_integer_and_json_round_trips() {
        let e = todo();
        let row = validate_insert(&e, &json!({"title":"a","done":true,"meta":{"k":[1]}}), false).unwrap();
        assert_eq!(row.values[1].1, SqlValue::Integer(1));
        let meta = &row.values[2].1;
        assert_eq!(sql_to_row_value(&e, "meta", meta), json!({"k":[1]}));
    }
}

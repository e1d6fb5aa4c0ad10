//! The app manifest: entities, their fields and indexes, and (for later subsystems) policies,
//! rooms, shards and jobs. Loaded once at start; validated before anything touches the database.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{PlazaError, Result};

/// Columns every row has; not declarable as fields.
pub const SYSTEM_FIELDS: [&str; 3] = ["id", "createdAt", "updatedAt"];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppManifest {
    #[serde(default = "default_manifest_version")]
    pub manifest_version: u32,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub entities: Vec<EntityDef>,
    #[serde(default)]
    pub policies: Vec<PolicyDef>,
    /// Sections owned by later subsystems; kept verbatim until they are read.
    #[serde(default)]
    pub rooms: Option<Value>,
    #[serde(default)]
    pub shards: Option<Value>,
    #[serde(default)]
    pub jobs: Option<Value>,
}

fn default_manifest_version() -> u32 {
    1
}

/// An empty app that passes `validate` (what `plaza` serves when there is no manifest file),
/// so the version must be the supported one, as for a parsed manifest that omits it.
impl Default for AppManifest {
    fn default() -> Self {
        AppManifest {
            manifest_version: default_manifest_version(),
            name: String::new(),
            version: String::new(),
            entities: Vec::new(),
            policies: Vec::new(),
            rooms: None,
            shards: None,
            jobs: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityDef {
    pub name: String,
    #[serde(default)]
    pub fields: Vec<FieldDef>,
    #[serde(default)]
    pub indexes: Vec<IndexDef>,
    /// Full-text search over string fields (an FTS5 table kept by the Writer), with facets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchDef>,
    /// Named links to other entities, followed by graph queries and link/unlink.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<RelationDef>,
}

/// `{"name":"owner","target":"User","field":"ownerId"}`: many-to-one, `field` is an
/// `id(Target)` on this entity. With `"many":true` it is one-to-many: `field` is an
/// `id(ThisEntity)` on the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelationDef {
    pub name: String,
    pub target: String,
    pub field: String,
    #[serde(default)]
    pub many: bool,
}

/// `{"text":["title","notes"],"facets":["status"]}`; a bare list means text fields only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "SearchSpec")]
pub struct SearchDef {
    pub text: Vec<String>,
    pub facets: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SearchSpec {
    Text(Vec<String>),
    Full(SearchFull),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchFull {
    text: Vec<String>,
    #[serde(default)]
    facets: Vec<String>,
}

impl From<SearchSpec> for SearchDef {
    fn from(s: SearchSpec) -> Self {
        match s {
            SearchSpec::Text(text) => SearchDef { text, facets: Vec::new() },
            SearchSpec::Full(SearchFull { text, facets }) => SearchDef { text, facets },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldDef {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(default)]
    pub optional: bool,
    #[serde(default)]
    pub unique: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexDef {
    pub fields: Vec<String>,
    #[serde(default)]
    pub unique: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyDef {
    pub entity: String,
    #[serde(flatten)]
    pub rules: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FieldType {
    String,
    Int,
    Float,
    Bool,
    Datetime,
    Json,
    Id(String),
}

impl FieldType {
    /// The SQLite column type. Columns are nullable: required-ness is checked on write, so an
    /// optional field added later migrates with a plain `ALTER TABLE ADD COLUMN`.
    pub fn sql_type(&self) -> &'static str {
        match self {
            FieldType::Int | FieldType::Bool => "INTEGER",
            FieldType::Float => "REAL",
            _ => "TEXT",
        }
    }
}

impl TryFrom<String> for FieldType {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        Ok(match s.as_str() {
            "string" => FieldType::String,
            "int" => FieldType::Int,
            "float" => FieldType::Float,
            "bool" => FieldType::Bool,
            "datetime" => FieldType::Datetime,
            "json" => FieldType::Json,
            other => match other.strip_prefix("id(").and_then(|r| r.strip_suffix(')')) {
                Some(target) if is_identifier(target) => FieldType::Id(target.to_string()),
                _ => {
                    return Err(format!(
                        "unknown field type '{other}' (expected string, int, float, bool, datetime, json or id(Entity))"
                    ))
                }
            },
        })
    }
}

impl From<FieldType> for String {
    fn from(t: FieldType) -> String {
        t.to_string()
    }
}

impl std::fmt::Display for FieldType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldType::String => f.write_str("string"),
            FieldType::Int => f.write_str("int"),
            FieldType::Float => f.write_str("float"),
            FieldType::Bool => f.write_str("bool"),
            FieldType::Datetime => f.write_str("datetime"),
            FieldType::Json => f.write_str("json"),
            FieldType::Id(e) => write!(f, "id({e})"),
        }
    }
}

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

impl AppManifest {
    /// Reads a manifest from a `.json` or `.toml` file. `Ok(None)` when the file does not exist.
    pub fn load(path: &Path) -> Result<Option<AppManifest>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(PlazaError::Validation(format!("cannot read {}: {e}", path.display())))
            }
        };
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        let manifest = if is_toml { Self::from_toml(&text) } else { Self::from_json(&text) }
            .map_err(|e| PlazaError::Validation(format!("{}: {e}", path.display())))?;
        Ok(Some(manifest))
    }

    pub fn from_json(text: &str) -> Result<AppManifest> {
        let m: AppManifest = serde_json::from_str(text).map_err(|e| {
            PlazaError::Validation(format!("line {} column {}: {e}", e.line(), e.column()))
        })?;
        m.validate()?;
        Ok(m)
    }

    pub fn from_toml(text: &str) -> Result<AppManifest> {
        let value: Value = toml_to_json(text)?;
        let m: AppManifest =
            serde_json::from_value(value).map_err(|e| PlazaError::Validation(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Every structural problem found, one per line, so `plaza check` can show them all at once
    /// (policy expressions are checked by [`crate::model::check`]).
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        if self.manifest_version != 1 {
            problems.push(format!("manifest_version {} is not supported (expected 1)", self.manifest_version));
        }
        let names: HashSet<&str> = self.entities.iter().map(|e| e.name.as_str()).collect();
        let mut seen = HashSet::new();
        for entity in &self.entities {
            let en = &entity.name;
            if !is_identifier(en) {
                problems.push(format!("entity name '{en}' must be a letter followed by letters, digits or _ (max 64)"));
            }
            if !seen.insert(en.as_str()) {
                problems.push(format!("entity '{en}' is declared twice"));
            }
            let mut fields = HashSet::new();
            for f in &entity.fields {
                if !is_identifier(&f.name) {
                    problems.push(format!("{en}.{}: field name must be a letter followed by letters, digits or _", f.name));
                }
                if SYSTEM_FIELDS.contains(&f.name.as_str()) {
                    problems.push(format!("{en}.{}: '{}' is a system field and cannot be declared", f.name, f.name));
                }
                if !fields.insert(f.name.as_str()) {
                    problems.push(format!("{en}.{}: field declared twice", f.name));
                }
                if let FieldType::Id(target) = &f.ty {
                    if !names.contains(target.as_str()) {
                        problems.push(format!("{en}.{}: id({target}) refers to an unknown entity", f.name));
                    }
                }
            }
            for idx in &entity.indexes {
                if idx.fields.is_empty() {
                    problems.push(format!("{en}: an index needs at least one field"));
                }
                for f in &idx.fields {
                    if !fields.contains(f.as_str()) && !SYSTEM_FIELDS.contains(&f.as_str()) {
                        problems.push(format!("{en}: index field '{f}' is not a field of {en}"));
                    }
                }
            }
            if let Some(search) = &entity.search {
                check_search(entity, search, &mut problems);
            }
            check_relations(self, entity, &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PlazaError::Validation(problems.join("\n")))
        }
    }

    pub fn entity(&self, name: &str) -> Option<&EntityDef> {
        self.entities.iter().find(|e| e.name == name)
    }
}

/// Text fields must be strings (what FTS5 indexes); facets any scalar field or system column.
fn check_search(entity: &EntityDef, search: &SearchDef, problems: &mut Vec<String>) {
    let en = &entity.name;
    if search.text.is_empty() {
        problems.push(format!("{en}: search needs at least one text field"));
    }
    let mut seen = HashSet::new();
    for f in &search.text {
        match entity.field(f) {
            _ if !seen.insert(f.as_str()) => problems.push(format!("{en}: search text field '{f}' is listed twice")),
            Some(def) if def.ty == FieldType::String => {}
            Some(def) => problems.push(format!("{en}: search text field '{f}' is {}, not string", def.ty)),
            None => problems.push(format!("{en}: search field '{f}' is not a field of {en}")),
        }
    }
    for f in &search.facets {
        match entity.field(f) {
            Some(def) if def.ty == FieldType::Json => {
                problems.push(format!("{en}: search facet '{f}' is a json field; facets count scalar values"))
            }
            Some(_) => {}
            None if SYSTEM_FIELDS.contains(&f.as_str()) => {}
            None => problems.push(format!("{en}: search facet '{f}' is not a field of {en}")),
        }
    }
}

/// Each relation names an existing target and a field of the right `id(..)` type on the right
/// side, and its name is free (it becomes a key of the rows a graph query returns).
fn check_relations(manifest: &AppManifest, entity: &EntityDef, problems: &mut Vec<String>) {
    let en = &entity.name;
    let mut names = HashSet::new();
    for rel in &entity.relations {
        let rn = format!("{en}.{}", rel.name);
        if !is_identifier(&rel.name) {
            problems.push(format!("{rn}: relation name must be a letter followed by letters, digits or _"));
        }
        if !names.insert(rel.name.as_str()) {
            problems.push(format!("{rn}: relation declared twice"));
        }
        if entity.has_column(&rel.name) {
            problems.push(format!("{rn}: relation name is already a field of {en}"));
        }
        let Some(target) = manifest.entity(&rel.target) else {
            problems.push(format!("{rn}: relation target '{}' is not an entity", rel.target));
            continue;
        };
        // Many-to-one: the key is here and points there; one-to-many: the key is there, pointing here.
        let (holder, points_to) = if rel.many { (target, en) } else { (entity, &rel.target) };
        match holder.field(&rel.field) {
            None => problems.push(format!(
                "{rn}: relation field '{}' is not a field of {}",
                rel.field, holder.name
            )),
            Some(f) if f.ty != FieldType::Id(points_to.clone()) => problems.push(format!(
                "{rn}: relation field {}.{} is {}, expected id({points_to})",
                holder.name, rel.field, f.ty
            )),
            Some(_) => {}
        }
    }
}

impl EntityDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn relation(&self, name: &str) -> Option<&RelationDef> {
        self.relations.iter().find(|r| r.name == name)
    }

    /// Whether `name` can be filtered/ordered on: a declared field or a system column.
    pub fn has_column(&self, name: &str) -> bool {
        SYSTEM_FIELDS.contains(&name) || self.field(name).is_some()
    }
}

fn toml_to_json(text: &str) -> Result<Value> {
    let v: toml::Value = toml::from_str(text).map_err(|e| PlazaError::Validation(e.to_string()))?;
    serde_json::to_value(v).map_err(|e| PlazaError::Validation(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_manifest_is_a_valid_empty_app() {
        let m = AppManifest::default();
        m.validate().unwrap();
        assert!(m.entities.is_empty() && m.policies.is_empty());
    }

    #[test]
    fn parses_the_api_example() {
        let m = AppManifest::from_json(
            r#"{"manifest_version":1,"name":"todo","entities":[
              {"name":"Todo","fields":[{"name":"title","type":"string"},{"name":"ownerId","type":"id(User)","optional":true}],
               "indexes":[{"fields":["ownerId"]}]},
              {"name":"User","fields":[{"name":"email","type":"string","unique":true}]}],
              "policies":[{"entity":"Todo","read":"true","write":"true"}],
              "rooms":{"max_members":100},"jobs":[]}"#,
        )
        .unwrap();
        assert_eq!(m.entities[0].fields[1].ty, FieldType::Id("User".into()));
        assert!(m.entities[1].fields[0].unique);
    }

    #[test]
    fn reports_every_problem() {
        let err = AppManifest::from_json(
            r#"{"entities":[{"name":"Todo","fields":[{"name":"id","type":"string"},{"name":"o","type":"id(Nope)"}],
                "indexes":[{"fields":["missing"]}]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("system field"), "{err}");
        assert!(err.contains("id(Nope)"), "{err}");
        assert!(err.contains("'missing'"), "{err}");
    }

    #[test]
    fn relations_and_search_are_checked_naming_the_culprit() {
        let ok = AppManifest::from_json(
            r#"{"entities":[
              {"name":"Todo","fields":[{"name":"title","type":"string"},{"name":"status","type":"string"},
                 {"name":"ownerId","type":"id(User)","optional":true}],
               "relations":[{"name":"owner","target":"User","field":"ownerId"}],
               "search":{"text":["title"],"facets":["status"]}},
              {"name":"User","fields":[{"name":"email","type":"string"}],
               "relations":[{"name":"todos","target":"Todo","field":"ownerId","many":true}],
               "search":["email"]}]}"#,
        )
        .unwrap();
        assert_eq!(ok.entities[0].search.as_ref().unwrap().facets, vec!["status"]);
        assert_eq!(ok.entities[1].search.as_ref().unwrap().text, vec!["email"]);
        assert!(ok.entities[1].relation("todos").unwrap().many);
        let err = AppManifest::from_json(
            r#"{"entities":[
              {"name":"Todo","fields":[{"name":"title","type":"string"},{"name":"n","type":"int"},
                 {"name":"ownerId","type":"id(User)","optional":true}],
               "relations":[{"name":"owner","target":"Nobody","field":"ownerId"},
                            {"name":"boss","target":"User","field":"title"},
                            {"name":"title","target":"User","field":"ownerId"}],
               "search":{"text":["n","gone"],"facets":["nope"]}},
              {"name":"User","fields":[{"name":"email","type":"string"}],
               "relations":[{"name":"todos","target":"Todo","field":"missing","many":true}]}]}"#,
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "Todo.owner: relation target 'Nobody'",
            "Todo.boss: relation field Todo.title is string, expected id(User)",
            "Todo.title: relation name is already a field",
            "User.todos: relation field 'missing' is not a field of Todo",
            "search text field 'n' is int",
            "search field 'gone'",
            "search facet 'nope'",
        ] {
            assert!(err.contains(needle), "{needle} in {err}");
        }
    }

    #[test]
    fn toml_manifests_read_like_json() {
        let m = AppManifest::from_toml(
            r#"
            name = "todo"
            [[entities]]
            name = "Todo"
            fields = [{ name = "title", type = "string" }, { name = "done", type = "bool", optional = true }]
            "#,
        )
        .unwrap();
        assert_eq!(m.entities[0].fields[1].ty, FieldType::Bool);
        assert!(m.entities[0].fields[1].optional);
    }

    #[test]
    fn rejects_unknown_types_with_position() {
        let err = AppManifest::from_json(r#"{"entities":[{"name":"T","fields":[{"name":"a","type":"blob"}]}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field type 'blob'"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }
}

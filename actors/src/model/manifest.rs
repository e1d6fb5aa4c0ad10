//! The app manifest: entities, their fields and indexes, policies, room rules, and (for later
//! subsystems) shards and jobs. Loaded once at start; validated before anything touches the database.

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
    #[serde(default)]
    pub rooms: Option<RoomsDef>,
    #[serde(default)]
    pub shards: Vec<ShardDef>,
    /// Job names sessions may enqueue (`"public": true`) and cron entries (`"cron"`).
    #[serde(default)]
    pub jobs: Vec<JobDef>,
    /// Who may publish and subscribe to pub/sub topics.
    #[serde(default)]
    pub topics: Vec<TopicDef>,
}

/// A manifest `jobs` entry: `{"name","cron?","payload?","public?"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobDef {
    pub name: String,
    /// Six fields with seconds (`sec min hour day-of-month month day-of-week`), UTC.
    #[serde(default)]
    pub cron: Option<String>,
    #[serde(default)]
    pub payload: Option<Value>,
    /// Sessions may enqueue this job over HTTP (the admin may enqueue any).
    #[serde(default)]
    pub public: bool,
}

/// A manifest `topics` entry: a glob `pattern` (`*` matches any run of characters) and the
/// rules for it; a missing rule falls back to the default (sessions subscribe, admin publishes).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDef {
    pub pattern: String,
    #[serde(default)]
    pub publish: Option<String>,
    #[serde(default)]
    pub subscribe: Option<String>,
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
            shards: Vec::new(),
            jobs: Vec::new(),
            topics: Vec::new(),
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
    /// Statements the store runs per row, formatted on first use (see [`EntityDef::statement`]).
    #[serde(skip)]
    statements: Statements,
}

/// The statements the store runs for every row it reads or writes. Each is formatted once per
/// entity instead of per row: formatting the read-by-id one was ~4% of a get, and the search
/// index's a few percent of the Writer's time on inserts.
#[derive(Debug, Clone, Copy)]
pub enum Statement {
    SelectById,
    SearchRowidLookup,
    SearchIndexInsert,
    SearchIndexDelete,
}

/// One slot per [`Statement`] (the last variant's index + 1).
const STATEMENTS: usize = Statement::SearchIndexDelete as usize + 1;

#[derive(Debug, Clone, Default)]
struct Statements([std::sync::OnceLock<std::sync::Arc<str>>; STATEMENTS]);

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

/// A shard started at boot: `{"name","sim","tick_hz?","config?","persist?"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardDef {
    pub name: String,
    pub sim: String,
    #[serde(default)]
    pub tick_hz: Option<u32>,
    #[serde(default)]
    pub config: Option<Value>,
    /// Store the last snapshot when the shard stops and resume from it on start.
    #[serde(default)]
    pub persist: bool,
}

/// Ticks per second of a shard that does not say.
pub const DEFAULT_TICK_HZ: u32 = 20;
/// The fastest tick a shard may ask for.
pub const MAX_TICK_HZ: u32 = 120;
/// Longest shard name.
pub const MAX_SHARD_NAME_LEN: usize = 128;

/// A shard name: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
pub fn is_shard_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SHARD_NAME_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PolicyDef {
    pub entity: String,
    #[serde(flatten)]
    pub rules: HashMap<String, String>,
}

/// The `rooms` section: a cap on members per room and who may do what in which rooms. Rule
/// expressions are compiled (and checked) by [`crate::model::policy::RoomRules`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsDef {
    /// Members per room; overrides the server's `PLAZA_ROOM_MAX_MEMBERS` when given.
    #[serde(default)]
    pub max_members: Option<usize>,
    #[serde(default)]
    pub rules: Vec<RoomRuleDef>,
}

/// One room rule: rooms whose name matches `pattern` (`*` matches any run of characters).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomRuleDef {
    pub pattern: String,
    #[serde(default)]
    pub join: Option<String>,
    #[serde(default)]
    pub broadcast: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    /// Keep the room's state document in the database while the room is stopped.
    #[serde(default)]
    pub persist: bool,
}

/// Longest room name, and the characters a name may use.
pub const MAX_ROOM_NAME_LEN: usize = 128;

pub fn is_room_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')
}

/// A room name: 1 to 128 characters of `[A-Za-z0-9_.:-]`.
pub fn validate_room_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_ROOM_NAME_LEN || !name.chars().all(is_room_name_char) {
        return Err(PlazaError::Validation(format!(
            "a room name is 1 to {MAX_ROOM_NAME_LEN} characters of A-Z a-z 0-9 _ . : -"
        )));
    }
    Ok(())
}

/// Matches `name` against a rule pattern (room and topic rules), where `*` stands for any run
/// of characters; on a match, answers what the first `*` matched (`""` without one). Each part
/// between stars is taken at its leftmost place, which finds a match whenever there is one, in
/// linear time.
pub fn pattern_match<'n>(pattern: &str, name: &'n str) -> Option<&'n str> {
    let mut parts = pattern.split('*');
    let mut rest = name.strip_prefix(parts.next().unwrap_or_default())?;
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else { return rest.is_empty().then_some("") };
    let mut first_star = None;
    for part in parts {
        let at = rest.find(part)?;
        first_star.get_or_insert(&rest[..at]);
        rest = &rest[at + part.len()..];
    }
    let before_last = rest.strip_suffix(last)?;
    Some(first_star.unwrap_or(before_last))
}

/// Whether `name` matches a rule pattern, where `*` stands for any run of characters.
pub fn room_pattern_matches(pattern: &str, name: &str) -> bool {
    pattern_match(pattern, name).is_some()
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
        if let Some(rooms) = &self.rooms {
            if rooms.max_members == Some(0) {
                problems.push("rooms.max_members must be at least 1".into());
            }
            for (i, rule) in rooms.rules.iter().enumerate() {
                let p = &rule.pattern;
                if p.is_empty() || p.len() > MAX_ROOM_NAME_LEN || !p.chars().all(|c| c == '*' || is_room_name_char(c)) {
                    problems.push(format!(
                        "rooms.rules[{i}]: pattern '{p}' must be 1 to {MAX_ROOM_NAME_LEN} characters of A-Z a-z 0-9 _ . : - and *"
                    ));
                }
            }
        }
        let mut shard_names = HashSet::new();
        for shard in &self.shards {
            let sn = &shard.name;
            if !is_shard_name(sn) {
                problems.push(format!("shard name '{sn}' must be 1 to {MAX_SHARD_NAME_LEN} characters of A-Z a-z 0-9 _ . : -"));
            }
            if !shard_names.insert(sn.as_str()) {
                problems.push(format!("shard '{sn}' is declared twice"));
            }
            if shard.tick_hz.is_some_and(|hz| hz == 0 || hz > MAX_TICK_HZ) {
                problems.push(format!("shard '{sn}': tick_hz must be between 1 and {MAX_TICK_HZ}"));
            }
        }
        let mut job_names = HashSet::new();
        for job in &self.jobs {
            let n = &job.name;
            let valid = !n.is_empty() && n.len() <= 128 && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
            if !valid {
                problems.push(format!("job '{n}': names are 1 to 128 letters, digits or _ - . :"));
            }
            if !job_names.insert(n.as_str()) {
                problems.push(format!("job '{n}' is declared twice"));
            }
            if let Some(Err(e)) = job.cron.as_deref().map(parse_cron) {
                problems.push(format!("job '{n}': {e}"));
            }
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
    /// The SQL of `which` for this entity: `build` makes it the first time, later calls share it.
    pub fn statement(&self, which: Statement, build: impl FnOnce(&EntityDef) -> String) -> &std::sync::Arc<str> {
        self.statements.0[which as usize].get_or_init(|| build(self).into())
    }

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

/// Parses a cron expression: six fields with seconds, UTC (a seventh, the year, is accepted).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule> {
    let fields = expr.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(PlazaError::Validation(format!(
            "cron '{expr}' has {fields} fields; expected six: sec min hour day-of-month month day-of-week"
        )));
    }
    <cron::Schedule as std::str::FromStr>::from_str(expr).map_err(|e| PlazaError::Validation(format!("cron '{expr}': {e}")))
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
              "rooms":{"max_members":100},"shards":[{"name":"arena","sim":"arena","tick_hz":30}],"jobs":[]}"#,
        )
        .unwrap();
        assert_eq!(m.entities[0].fields[1].ty, FieldType::Id("User".into()));
        assert_eq!((m.shards[0].sim.as_str(), m.shards[0].tick_hz, m.shards[0].persist), ("arena", Some(30), false));
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
    fn shard_entries_are_checked() {
        let err = AppManifest::from_json(
            r#"{"shards":[{"name":"a b","sim":"arena"},{"name":"x","sim":"arena","tick_hz":500},{"name":"x","sim":"arena"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("shard name 'a b'"), "{err}");
        assert!(err.contains("between 1 and 120"), "{err}");
        assert!(err.contains("'x' is declared twice"), "{err}");
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
    fn room_rules_parse_and_patterns_match() {
        let m = AppManifest::from_json(
            r#"{"rooms":{"max_members":8,"rules":[{"pattern":"game-*","join":"!auth.guest","persist":true}]}}"#,
        )
        .unwrap();
        let rooms = m.rooms.unwrap();
        assert_eq!((rooms.max_members, rooms.rules[0].persist), (Some(8), true));
        for (pattern, name, hit) in [
            ("game-*", "game-1", true),
            ("game-*", "game-", true),
            ("game-*", "lobby", false),
            ("*", "anything", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "acb", false),
            ("a*a", "a", false),
            ("lobby", "lobby", true),
            ("lobby", "lobby2", false),
        ] {
            assert_eq!(room_pattern_matches(pattern, name), hit, "{pattern} ~ {name}");
        }
        // What the first `*` matched (topic rules' `topic.match`).
        assert_eq!(pattern_match("a*b*c", "aXXbYYbc"), Some("XX"));
        assert_eq!(pattern_match("user:*", "user:alice"), Some("alice"));
        assert_eq!(pattern_match("lobby", "lobby"), Some(""));
        let err = AppManifest::from_json(r#"{"rooms":{"max_members":0,"rules":[{"pattern":"bad name"}]}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_members") && err.contains("'bad name'"), "{err}");
        assert!(AppManifest::from_json(r#"{"rooms":{"rules":[{"pattern":"x","jion":"true"}]}}"#).is_err());
        assert!(validate_room_name("game-1:a_b.c").is_ok());
        assert!(validate_room_name("").is_err() && validate_room_name("a b").is_err());
        assert!(validate_room_name(&"x".repeat(129)).is_err());
    }

    #[test]
    fn jobs_need_valid_names_and_six_field_crons() {
        let err = AppManifest::from_json(r#"{"jobs":[{"name":"a b","cron":"* * * * *"},{"name":"ok","cron":"0 0 * * * *"},{"name":"ok"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("job 'a b': names are"), "{err}");
        assert!(err.contains("has 5 fields"), "{err}");
        assert!(err.contains("job 'ok' is declared twice"), "{err}");
        assert!(AppManifest::from_json(r#"{"jobs":[{"name":"x","cron":"0 60 * * * *"}]}"#).is_err());
        let m = AppManifest::from_json(r#"{"jobs":[{"name":"report","cron":"0 0 7 * * Mon-Fri","payload":{"a":1}},{"name":"hi","public":true}]}"#).unwrap();
        assert!(m.jobs[1].public && m.jobs[0].payload.is_some());
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

//! Property tests over the parsers a client or an operator feeds: the filter language, policy
//! expressions and manifests. Whatever the input, they answer (never panic), and a refusal is a
//! `Validation` error (400 on the wire), not an internal one. Inputs are both arbitrary and
//! built from each language's own vocabulary, so they get past the first token.

use plaza_actors::model::policy::{Action, AuthContext, DefaultPolicy, Policies};
use plaza_actors::model::query::{self, Query};
use plaza_actors::{AppManifest, PlazaError};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const MANIFEST: &str = r#"{"manifest_version": 1, "entities": [{"name": "Todo", "fields": [
    {"name": "title", "type": "string"}, {"name": "done", "type": "bool"},
    {"name": "n", "type": "int", "optional": true}, {"name": "at", "type": "datetime", "optional": true},
    {"name": "tags", "type": "json", "optional": true}, {"name": "ownerId", "type": "id(User)", "optional": true}]},
    {"name": "User", "fields": [{"name": "email", "type": "string", "unique": true}]}]}"#;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 1024, failure_persistence: None, ..ProptestConfig::default() }
}

fn manifest() -> AppManifest {
    AppManifest::from_json(MANIFEST).unwrap()
}

fn is_validation(e: &PlazaError) -> bool {
    matches!(e, PlazaError::Validation(_))
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        Just(json!("2026-11-25T11:32:21.935Z")),
    ]
}

/// Any JSON, keys drawn mostly from the filter vocabulary.
fn filter_json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        prop::sample::select(vec![
            "title", "done", "n", "at", "tags", "ownerId", "id", "createdAt", "nope", "$and", "$or", "$not", "$eq",
            "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$like", "$order", "$limit", "$offset", "$search",
            "$contains", "\"; DROP TABLE Todo; --",
        ])
        .prop_map(String::from),
        ".{0,8}",
    ];
    scalar().prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Token soup from the policy language, so parses get deep before failing (or succeed).
fn policy_source() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "auth.userId", "auth.guest", "auth.admin", "auth.nope", "data.title", "data.ownerId", "data.tags", "data.nope",
        "old.title", "old.ownerId", "'a'", "\"b\"", "'", "\"", "1", "-2.5", "1e999", "true", "false", "null", "[", "]",
        ",", "(", ")", "==", "!=", "=", "in", "!", "&&", "||", "&", "|", "@", "data.", ".", "\u{e9}", "\n",
    ]);
    prop_oneof![
        prop::collection::vec(token, 0..24).prop_map(|t| t.join(" ")),
        ".{0,40}",
    ]
}

/// A manifest-shaped JSON document: right keys, arbitrary values in places.
fn manifest_json() -> impl Strategy<Value = Value> {
    let name = prop_oneof![
        prop::sample::select(vec!["Todo", "User", "id", "createdAt", "a b", "", "x\"y", "select", "sqlite_master"]).prop_map(String::from),
        "[A-Za-z_][A-Za-z0-9_]{0,6}",
        ".{0,6}",
    ];
    let ty = prop::sample::select(vec!["string", "int", "float", "bool", "datetime", "json", "id(User)", "id(", "blob", ""]);
    let field = (name.clone(), ty, any::<bool>(), any::<bool>(), scalar())
        .prop_map(|(n, t, opt, uniq, extra)| json!({"name": n, "type": t, "optional": opt, "unique": uniq, "default": extra}));
    let entity = (name.clone(), prop::collection::vec(field, 0..5), prop::collection::vec(name.clone(), 0..3))
        .prop_map(|(n, fields, idx)| json!({"name": n, "fields": fields, "indexes": [{"fields": idx}]}));
    let policy = (name, policy_source()).prop_map(|(e, src)| json!({"entity": e, "read": src}));
    (prop_oneof![Just(1), any::<i64>()], prop::collection::vec(entity, 0..4), prop::collection::vec(policy, 0..3))
        .prop_map(|(version, entities, policies)| json!({"manifest_version": version, "entities": entities, "policies": policies}))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn filters_parse_or_refuse_with_validation(v in filter_json()) {
        let m = manifest();
        let todo = m.entity("Todo").unwrap();
        match Query::parse(todo, &v) {
            Ok(q) => {
                // What parses also compiles and evaluates.
                let mut params = Vec::new();
                query::to_sql_where(&q.filter, &mut params);
                let row = json!({"id": "x", "title": "t", "done": 1, "n": 3, "tags": ["a"], "ownerId": null});
                q.filter.matches(row.as_object().unwrap());
            }
            Err(e) => prop_assert!(is_validation(&e), "{e:?} for {v}"),
        }
    }

    #[test]
    fn list_params_parse_or_refuse_with_validation(pairs in prop::collection::vec((".{0,8}", ".{0,12}"), 0..6),
                                                    order in "[-a-zA-Z:,]{0,20}") {
        let m = manifest();
        let todo = m.entity("Todo").unwrap();
        let mut params: std::collections::HashMap<String, String> = pairs.into_iter().collect();
        params.insert("order".into(), order);
        if let Err(e) = Query::from_params(todo, &params) {
            prop_assert!(is_validation(&e), "{e:?} for {params:?}");
        }
    }

    #[test]
    fn policy_expressions_parse_or_refuse_with_validation(src in policy_source(), user in proptest::option::of(".{0,6}")) {
        let mut m = manifest();
        let policy = serde_json::from_value(json!({"entity": "Todo", "read": src, "update": src})).unwrap();
        m.policies.push(policy);
        match Policies::from_manifest(&m, DefaultPolicy::Deny) {
            Ok(p) => {
                // A rule that parses can be compiled for any caller.
                let auth = AuthContext { user_id: user, ..AuthContext::default() };
                let row = json!({"title": "t", "ownerId": "u", "tags": ["u"]});
                p.cond("Todo", Action::Read, &auth, None);
                let _ = p.check_write("Todo", &auth, row.as_object(), row.as_object());
            }
            Err(e) => prop_assert!(is_validation(&e), "{e:?} for {src:?}"),
        }
    }

    #[test]
    fn arbitrary_text_is_never_a_manifest_panic(text in ".{0,200}") {
        if let Err(e) = AppManifest::from_json(&text) {
            prop_assert!(is_validation(&e), "{e:?}");
        }
    }

    #[test]
    fn manifest_shaped_documents_parse_or_refuse_with_validation(doc in manifest_json()) {
        match AppManifest::from_json(&doc.to_string()) {
            Ok(m) => {
                if let Err(e) = plaza_actors::model::check(&m) {
                    prop_assert!(is_validation(&e), "{e:?}");
                }
            }
            Err(e) => prop_assert!(is_validation(&e), "{e:?} for {doc}"),
        }
    }
}

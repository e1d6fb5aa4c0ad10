//! Query power (issue #11) against a real server: graph queries with includes under the read
//! policies and their caps, link/unlink as ordinary updates (change log, live subscribers),
//! aggregates checked against a brute-force count, and full-text search with facets.

mod common;

use std::collections::BTreeMap;

use actix_web::App;
use common::live::{connect, http, next, send};
use common::{config, ADMIN};
use plaza_actors::AppManifest;
use serde_json::{json, Value};


/// Users own todos, todos have comments. Reads hide `hidden` todos and comments from everyone
/// but the admin; writes of a todo are for its owner.
const MANIFEST: &str = r#"{
  "entities": [
    {"name": "User", "fields": [{"name": "email", "type": "string"}, {"name": "team", "type": "string", "optional": true}],
     "relations": [{"name": "todos", "target": "Todo", "field": "ownerId", "many": true}]},
    {"name": "Todo", "fields": [
        {"name": "title", "type": "string"}, {"name": "notes", "type": "string", "optional": true},
        {"name": "status", "type": "string"}, {"name": "priority", "type": "int", "optional": true},
        {"name": "estimate", "type": "float", "optional": true},
        {"name": "ownerId", "type": "id(User)", "optional": true}],
     "relations": [{"name": "owner", "target": "User", "field": "ownerId"},
                   {"name": "comments", "target": "Comment", "field": "todoId", "many": true}],
     "search": {"text": ["title", "notes"], "facets": ["status", "priority"]}},
    {"name": "Comment", "fields": [{"name": "body", "type": "string"}, {"name": "hidden", "type": "bool"},
        {"name": "todoId", "type": "id(Todo)"}],
     "relations": [{"name": "todo", "target": "Todo", "field": "todoId"}]}],
  "policies": [
    {"entity": "Todo", "read": "data.status != 'hidden'", "write": "auth.userId == data.ownerId"},
    {"entity": "Comment", "read": "data.hidden == 0"}]
}"#;

fn server_with(manifest: &str, config: plaza::config::Config) -> actix_test::TestServer {
    let state = plaza::build_state_with(config, AppManifest::from_json(manifest).unwrap()).unwrap();
    actix_test::start(move || App::new().configure(plaza::configure(state.clone())))
}

fn server() -> actix_test::TestServer {
    server_with(MANIFEST, config())
}

async fn session(srv: &actix_test::TestServer, user: &str) -> String {
    let (_, body) = http(srv, ADMIN, "POST", "/api/auth/session", Some(json!({"user_id": user}))).await;
    body["token"].as_str().unwrap().to_string()
}

/// Inserts rows as the admin in one transaction: `(entity, id, data)`.
async fn seed(srv: &actix_test::TestServer, rows: Vec<(&str, String, Value)>) {
    for chunk in rows.chunks(10_000) {
        let ops: Vec<Value> =
            chunk.iter().map(|(e, id, data)| json!({"op": "insert", "entity": e, "id": id, "data": data})).collect();
        let (status, body) = http(srv, ADMIN, "POST", "/api/transact", Some(json!(ops))).await;
        assert_eq!(status, 200, "{body}");
    }
}

fn ids(rows: &Value) -> Vec<&str> {
    rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect()
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

/// Two users, three todos each (one hidden), two comments per todo (one hidden).
async fn seed_small(srv: &actix_test::TestServer) {
    let mut rows = vec![
        ("User", "u1".to_string(), json!({"email": "ann@x", "team": "red"})),
        ("User", "u2".to_string(), json!({"email": "bob@x", "team": "blue"})),
    ];
    for u in ["u1", "u2"] {
        for (n, status) in ["open", "done", "hidden"].iter().enumerate() {
            let t = format!("{u}-t{n}");
            rows.push(("Todo", t.clone(), json!({"title": format!("{u} task {n}"), "status": status, "priority": n, "ownerId": u})));
            rows.push(("Comment", format!("{t}-c0"), json!({"body": "seen", "hidden": false, "todoId": t})));
            rows.push(("Comment", format!("{t}-c1"), json!({"body": "unseen", "hidden": true, "todoId": t})));
        }
    }
    seed(srv, rows).await;
}

#[actix_web::test]
async fn includes_two_levels_deep_leave_out_what_the_policy_hides() {
    let srv = server();
    seed_small(&srv).await;
    let alice = session(&srv, "alice").await;
    let q = json!({"User": {"$order": {"email": "asc"},
        "include": {"todos": {"$order": {"title": "asc"}, "include": {"comments": {}, "owner": {}}}}}});
    let (status, body) = http(&srv, &alice, "POST", "/api/query", Some(q.clone())).await;
    assert_eq!(status, 200, "{body}");
    let users = body["User"].as_array().unwrap();
    assert_eq!(ids(&body["User"]), ["u1", "u2"]);
    for u in users {
        let uid = u["id"].as_str().unwrap();
        let todos = &u["todos"];
        // The hidden todo is absent, not an error; so are hidden comments.
        assert_eq!(ids(todos), [format!("{uid}-t0"), format!("{uid}-t1")], "{body}");
        for t in todos.as_array().unwrap() {
            let tid = t["id"].as_str().unwrap();
            assert_eq!(ids(&t["comments"]), [format!("{tid}-c0")]);
            assert_eq!(t["owner"]["id"], uid, "a to-one include is the row itself");
        }
    }
    // The admin bypasses policies and sees every level in full.
    let (_, all) = http(&srv, ADMIN, "POST", "/api/query", Some(q)).await;
    assert_eq!(all["User"][0]["todos"].as_array().unwrap().len(), 3);
    assert_eq!(all["User"][0]["todos"][0]["comments"].as_array().unwrap().len(), 2);

    // Per-parent limit and where; a to-one include the policy hides (or that is missing) is null.
    let q = json!({"User": {"where": {"team": "red"}, "include": {"todos": {"where": {"status": "done"}, "$limit": 1}}},
                   "Comment": {"where": {"todoId": {"$in": ["u1-t2", "u1-t0"]}}, "include": {"todo": {}}}});
    let (status, body) = http(&srv, &alice, "POST", "/api/query", Some(q)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body["User"]), ["u1"]);
    assert_eq!(ids(&body["User"][0]["todos"]), ["u1-t1"]);
    let comments: BTreeMap<&str, &Value> =
        body["Comment"].as_array().unwrap().iter().map(|c| (c["id"].as_str().unwrap(), &c["todo"])).collect();
    assert_eq!(comments.keys().copied().collect::<Vec<_>>(), ["u1-t0-c0", "u1-t2-c0"]);
    assert_eq!(comments["u1-t0-c0"]["id"], "u1-t0");
    assert_eq!(*comments["u1-t2-c0"], Value::Null, "the todo is hidden from alice");
}

#[actix_web::test]
async fn graph_queries_refuse_bad_shapes_and_enforce_the_caps() {
    let srv = server();
    for (q, needle) in [
        (json!({"User": {"include": {"nope": {}}}}), "no relation"),
        (json!({"User": {"where": {"nope": 1}}}), "unknown field"),
        (json!({"User": {"where": {"email": {"$regex": "a"}}}}), "unknown operator"),
        (json!({"User": {"include": {"todos": {"include": {"owner": {"include": {"todos": {"include": {"owner": {"include": {"todos": {}}}}}}}}}}}}), "at most 4 levels"),
        (json!([1]), "graph query"),
    ] {
        let (status, body) = http(&srv, ADMIN, "POST", "/api/query", Some(q)).await;
        assert_eq!((status, code(&body)), (400, "VALIDATION"), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{needle}: {body}");
    }
    let (status, body) = http(&srv, ADMIN, "POST", "/api/query", Some(json!({"Nope": {}}))).await;
    assert_eq!((status, code(&body)), (404, "UNKNOWN_ENTITY"));

    // 60 users with 90 todos each: 5,460 rows in all is over the 5,000 cap; 10 per user is not.
    let mut rows = Vec::new();
    for u in 0..60 {
        rows.push(("User", format!("u{u:02}"), json!({"email": format!("{u}@x")})));
        for t in 0..90 {
            rows.push(("Todo", format!("u{u:02}-{t:02}"), json!({"title": "t", "status": "open", "ownerId": format!("u{u:02}")})));
        }
    }
    seed(&srv, rows).await;
    let (status, body) = http(&srv, ADMIN, "POST", "/api/query", Some(json!({"User": {"include": {"todos": {}}}}))).await;
    assert_eq!((status, code(&body)), (400, "VALIDATION"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("5000"), "{body}");
    let q = json!({"User": {"include": {"todos": {"$limit": 10, "$order": "-id"}}}});
    let (status, body) = http(&srv, ADMIN, "POST", "/api/query", Some(q)).await;
    assert_eq!(status, 200, "{body}");
    let users = body["User"].as_array().unwrap();
    assert_eq!(users.len(), 60);
    assert!(users.iter().all(|u| u["todos"].as_array().unwrap().len() == 10));
    assert_eq!(users[0]["todos"][0]["id"], "u00-89", "order applies within each parent");
}

#[actix_web::test]
async fn link_and_unlink_are_ordinary_updates_in_the_log_and_live() {
    let srv = server();
    seed_small(&srv).await;
    seed(&srv, vec![("Todo", "loose".into(), json!({"title": "loose end", "status": "open"}))]).await;
    let alice = session(&srv, "alice").await;
    let mut ws = connect(&srv, &alice).await;
    send(&mut ws, json!({"type": "subscribe", "id": "s", "entity": "Todo"})).await;
    let subscribed = next(&mut ws).await.expect("the socket stays open");
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let since = subscribed["seq"].as_i64().unwrap();
    // A second socket follows only rows matching a full-text filter (evaluated in memory).
    let mut found = connect(&srv, &alice).await;
    let sub = json!({"type": "subscribe", "id": "f", "entity": "Todo", "filter": {"$search": "LOOSE"}});
    send(&mut found, sub).await;
    assert_eq!(next(&mut found).await.expect("the socket stays open")["type"], "subscribed");

    // To-one, from the todo's side.
    let (status, body) = http(&srv, ADMIN, "POST", "/api/link",
        Some(json!({"entity": "Todo", "id": "loose", "relation": "owner", "target_id": "u1"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["entity"].as_str(), body["id"].as_str(), body["data"]["ownerId"].as_str()), (Some("Todo"), Some("loose"), Some("u1")));
    let frame = next(&mut ws).await.expect("the socket stays open");
    assert_eq!((frame["event"]["kind"].as_str(), frame["event"]["row_id"].as_str()), (Some("update"), Some("loose")));
    assert_eq!(frame["event"]["data"]["ownerId"], "u1");
    let (_, graph) = http(&srv, &alice, "POST", "/api/query", Some(json!({"User": {"where": {"id": "u1"}, "include": {"todos": {}}}}))).await;
    assert!(ids(&graph["User"][0]["todos"]).contains(&"loose"), "{graph}");

    // To-many, from the user's side: unlink clears the todo's key.
    let unlink = json!({"entity": "User", "id": "u1", "relation": "todos", "target_id": "loose"});
    let (status, body) = http(&srv, ADMIN, "POST", "/api/unlink", Some(unlink.clone())).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["ownerId"], Value::Null);
    let frame = next(&mut ws).await.expect("the socket stays open");
    assert_eq!((frame["event"]["row_id"].as_str(), &frame["event"]["data"]["ownerId"]), (Some("loose"), &Value::Null));
    // Not linked any more: 404, and nothing is written.
    let (status, body) = http(&srv, ADMIN, "POST", "/api/unlink", Some(unlink)).await;
    assert_eq!((status, code(&body)), (404, "NOT_FOUND"), "{body}");

    // Both writes are in the change log as updates of the todo.
    let (_, pull) = http(&srv, ADMIN, "GET", &format!("/api/sync/pull?since={since}"), None).await;
    let changes: Vec<(&str, &str, &Value)> = pull["changes"].as_array().unwrap().iter()
        .map(|c| (c["kind"].as_str().unwrap(), c["row_id"].as_str().unwrap(), &c["data"]["ownerId"])).collect();
    assert_eq!(changes, [("update", "loose", &json!("u1")), ("update", "loose", &Value::Null)], "{pull}");

    // The full-text subscription saw both updates of "loose end", skips an unrelated insert
    // and gets the next row with the word.
    for _ in 0..2 {
        assert_eq!(next(&mut found).await.expect("the socket stays open")["event"]["row_id"], "loose");
    }
    seed(&srv, vec![("Todo", "other".into(), json!({"title": "unrelated", "status": "open"})),
                    ("Todo", "loose2".into(), json!({"title": "Loose cannon", "status": "open"}))]).await;
    assert_eq!(next(&mut found).await.expect("the socket stays open")["event"]["row_id"], "loose2");

    // Write policies apply: bob may not move u1's todo; unknown things are refused.
    let bob = session(&srv, "bob").await;
    let (status, body) = http(&srv, &bob, "POST", "/api/link",
        Some(json!({"entity": "Todo", "id": "u1-t0", "relation": "owner", "target_id": "u2"}))).await;
    assert_eq!((status, code(&body)), (403, "FORBIDDEN"), "{body}");
    for (body, want) in [
        (json!({"entity": "Todo", "id": "loose", "relation": "owner", "target_id": "nobody"}), (404, "NOT_FOUND")),
        (json!({"entity": "Todo", "id": "nothing", "relation": "owner", "target_id": "u1"}), (404, "NOT_FOUND")),
        (json!({"entity": "Todo", "id": "loose", "relation": "nope", "target_id": "u1"}), (400, "VALIDATION")),
        (json!({"entity": "Todo", "id": "loose", "relation": "owner"}), (400, "VALIDATION")),
        (json!({"entity": "Comment", "id": "u1-t0-c0", "relation": "todo", "target_id": "u1-t0"}), (400, "VALIDATION")),
    ] {
        let path = if want.1 == "VALIDATION" && body["entity"] == "Comment" { "/api/unlink" } else { "/api/link" };
        let (status, got) = http(&srv, ADMIN, "POST", path, Some(body.clone())).await;
        assert_eq!((status, code(&got)), want, "{body} → {got}");
    }
}

/// `n` todos with statuses, priorities (some null) and estimates spread by a fixed rule.
fn spread_todos(n: usize) -> Vec<(&'static str, String, Value)> {
    let statuses = ["open", "done", "hidden", "blocked"];
    (0..n)
        .map(|i| {
            let priority = if i % 7 == 0 { Value::Null } else { json!((i * 31 % 5) as i64) };
            let estimate = if i % 5 == 0 { Value::Null } else { json!((i % 13) as f64 * 0.5) };
            let data = json!({"title": format!("task {i}"), "status": statuses[i * 17 % 4], "priority": priority,
                              "estimate": estimate, "ownerId": format!("u{}", i % 3)});
            ("Todo", format!("t{i:04}"), data)
        })
        .collect()
}

#[actix_web::test]
async fn aggregates_match_a_brute_force_count_under_the_policy() {
    let srv = server();
    seed(&srv, spread_todos(600)).await;
    let alice = session(&srv, "alice").await;
    let (_, rows) = http(&srv, &alice, "POST", "/api/query/Todo", Some(json!({"$limit": 1000}))).await;
    let rows = rows.as_array().unwrap().clone();
    assert!(rows.len() > 300 && rows.len() < 600, "the policy hides the hidden ones: {}", rows.len());

    // No groupBy: one group with an empty key.
    let (status, body) = http(&srv, &alice, "POST", "/api/aggregate/Todo",
        Some(json!({"count": "*", "sum": "priority", "avg": "estimate", "min": "title", "max": ["priority", "estimate"]}))).await;
    assert_eq!(status, 200, "{body}");
    let g = &body["groups"].as_array().unwrap()[0];
    assert_eq!(body["groups"].as_array().unwrap().len(), 1);
    assert_eq!(g["key"], json!({}));
    assert_eq!(g["count"], rows.len());
    let prio: Vec<i64> = rows.iter().filter_map(|r| r["priority"].as_i64()).collect();
    let est: Vec<f64> = rows.iter().filter_map(|r| r["estimate"].as_f64()).collect();
    assert_eq!(g["sum"], prio.iter().sum::<i64>());
    assert!((g["avg"].as_f64().unwrap() - est.iter().sum::<f64>() / est.len() as f64).abs() < 1e-9);
    assert_eq!(g["min"], rows.iter().map(|r| r["title"].as_str().unwrap()).min().unwrap());
    assert_eq!(g["max"]["priority"], *prio.iter().max().unwrap());

    // groupBy two fields, with a where: every group equals the brute-force count and sum.
    let (status, body) = http(&srv, &alice, "POST", "/api/aggregate/Todo",
        Some(json!({"count": "*", "sum": "estimate", "groupBy": ["status", "priority"], "where": {"ownerId": {"$ne": "u2"}}}))).await;
    assert_eq!(status, 200, "{body}");
    let mut brute: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    for r in rows.iter().filter(|r| r["ownerId"] != "u2") {
        let e = brute.entry(format!("{}/{}", r["status"], r["priority"])).or_default();
        e.0 += 1;
        e.1 += r["estimate"].as_f64().unwrap_or(0.0);
    }
    let groups = body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), brute.len(), "{body}");
    for g in groups {
        let (count, sum) = brute[&format!("{}/{}", g["key"]["status"], g["key"]["priority"])];
        assert_eq!(g["count"], count, "{g}");
        assert!((g["sum"].as_f64().unwrap_or(0.0) - sum).abs() < 1e-9, "{g}");
    }
    assert!(groups.iter().all(|g| g["key"]["status"] != "hidden"), "hidden rows never count");
    // The admin sees the hidden ones too.
    let (_, all) = http(&srv, ADMIN, "POST", "/api/aggregate/Todo", Some(json!({"groupBy": "status"}))).await;
    assert_eq!(all["groups"].as_array().unwrap().iter().map(|g| g["count"].as_u64().unwrap()).sum::<u64>(), 600);

    for bad in [json!({"sum": "title"}), json!({"groupBy": ["nope"]}), json!({"count": "*", "having": 1}), json!({"where": {"status": {"$regex": "x"}}})] {
        let (status, body) = http(&srv, &alice, "POST", "/api/aggregate/Todo", Some(bad)).await;
        assert_eq!((status, code(&body)), (400, "VALIDATION"), "{body}");
    }
}

async fn search(srv: &actix_test::TestServer, token: &str, query: &str) -> (u16, Value) {
    http(srv, token, "GET", &format!("/api/search/Todo?{query}"), None).await
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[actix_web::test]
async fn search_ranks_counts_facets_and_stays_in_step_with_writes() {
    let srv = server();
    let mut rows = spread_todos(200);
    rows.push(("Todo", "best".into(), json!({"title": "milk", "notes": "buy milk today", "status": "open", "priority": 1})));
    rows.push(("Todo", "weak".into(), json!({"title": "groceries",
        "notes": "eggs bread butter cheese apples pears flour sugar and maybe some milk later this week", "status": "open"})));
    rows.push(("Todo", "secret".into(), json!({"title": "milk milk milk", "status": "hidden"})));
    rows.push(("Todo", "accent".into(), json!({"title": "Crème brûlée", "status": "done", "priority": 2})));
    seed(&srv, rows).await;
    let alice = session(&srv, "alice").await;

    // bm25: the short, focused row first; the hidden one is absent.
    let (status, body) = search(&srv, &alice, "q=milk").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body["data"]), ["best", "weak"], "{body}");
    assert_eq!(body["total"], 2);
    assert!(body["data"][0]["_score"].as_f64().unwrap() > body["data"][1]["_score"].as_f64().unwrap());
    assert_eq!(body["facets"], json!({"status": {"open": 2}, "priority": {"1": 1, "null": 1}}));
    // Diacritics and case fold; a trailing * is a prefix.
    assert_eq!(ids(&search(&srv, &alice, "q=creme%20BRULEE").await.1["data"]), ["accent"]);
    assert_eq!(ids(&search(&srv, &alice, "q=gro*").await.1["data"]), ["weak"]);

    // Facets over a common word equal a brute-force count of the readable rows, with filter.
    let filter = enc(&json!({"ownerId": {"$ne": "u1"}}).to_string());
    let (status, body) = search(&srv, &alice, &format!("q=task&facets=status&limit=5&filter={filter}")).await;
    assert_eq!(status, 200, "{body}");
    let (_, all) = http(&srv, &alice, "POST", "/api/query/Todo", Some(json!({"ownerId": {"$ne": "u1"}, "title": {"$like": "task"}}))).await;
    let mut brute: BTreeMap<String, u64> = BTreeMap::new();
    for r in all.as_array().unwrap() {
        *brute.entry(r["status"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(body["total"], all.as_array().unwrap().len());
    assert_eq!(body["facets"]["status"], json!(brute));
    assert_eq!(body["data"].as_array().unwrap().len(), 5);
    assert!(body["facets"].get("priority").is_none(), "only the facets asked for");
    // Paging walks the same ranking.
    let (_, p2) = search(&srv, &alice, &format!("q=task&limit=5&offset=5&filter={filter}")).await;
    let (_, p12) = search(&srv, &alice, &format!("q=task&limit=10&filter={filter}")).await;
    assert_eq!([ids(&body["data"]), ids(&p2["data"])].concat(), ids(&p12["data"]));

    // $search is part of the filter language, in lists, queries and graph queries alike.
    let (_, found) = http(&srv, &alice, "POST", "/api/query/Todo", Some(json!({"$search": "milk", "status": "open"}))).await;
    assert_eq!(ids(&found).len(), 2, "{found}");
    let (_, none) = http(&srv, &alice, "POST", "/api/query/Todo", Some(json!({"$or": [{"$search": "brulee"}, {"id": "best"}]}))).await;
    assert_eq!(ids(&none).len(), 2, "{none}");

    // Updates and deletes keep the index in step (inside the Writer's transaction).
    let (status, _) = http(&srv, ADMIN, "PATCH", "/api/entities/Todo/best", Some(json!({"title": "oat drink", "notes": null}))).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&search(&srv, &alice, "q=milk").await.1["data"]), ["weak"]);
    assert_eq!(ids(&search(&srv, &alice, "q=oat").await.1["data"]), ["best"]);
    http(&srv, ADMIN, "DELETE", "/api/entities/Todo/weak", None).await;
    assert_eq!(search(&srv, &alice, "q=milk").await.1["total"], 0);
    let (status, body) = http(&srv, ADMIN, "POST", "/api/batch", Some(json!({"operations": [
        {"op": "insert", "entity": "Todo", "id": "again", "data": {"title": "milk again", "status": "open"}},
        {"op": "insert", "entity": "Todo", "id": "again", "data": {"title": "milk twice", "status": "open"}}]}))).await;
    assert_eq!((status, body["failed"].as_u64()), (200, Some(1)), "{body}");
    let (_, body) = search(&srv, &alice, "q=milk").await;
    assert_eq!((ids(&body["data"]), &body["total"]), (vec!["again"], &json!(1)), "a failed op leaves no index entry");
    // One transaction that inserts, rewrites and removes rows: its index writes follow its ops
    // in order; a transaction that fails leaves none.
    let (status, body) = http(&srv, ADMIN, "POST", "/api/transact", Some(json!([
        {"op": "insert", "entity": "Todo", "id": "t1", "data": {"title": "kiwi", "status": "open"}},
        {"op": "update", "entity": "Todo", "id": "t1", "data": {"title": "mango"}},
        {"op": "insert", "entity": "Todo", "id": "t2", "data": {"title": "kiwi", "status": "open"}},
        {"op": "delete", "entity": "Todo", "id": "t2"}]))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(search(&srv, &alice, "q=kiwi").await.1["total"], 0);
    assert_eq!(ids(&search(&srv, &alice, "q=mango").await.1["data"]), ["t1"]);
    let (status, body) = http(&srv, ADMIN, "POST", "/api/transact", Some(json!([
        {"op": "insert", "entity": "Todo", "id": "t3", "data": {"title": "papaya", "status": "open"}},
        {"op": "insert", "entity": "Todo", "id": "t1", "data": {"title": "papaya", "status": "open"}}]))).await;
    assert_eq!((status, code(&body)), (409, "CONFLICT"), "{body}");
    assert_eq!(search(&srv, &alice, "q=papaya").await.1["total"], 0, "nothing of a failed transaction is searchable");

    // The admin reads every row, so its search takes facets from the index's own copy of
    // them (no read of the entity's rows): a facet-only update moves the counts.
    let (status, body) = search(&srv, ADMIN, "q=milk&facets=status,priority").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["facets"], json!({"status": {"open": 1, "hidden": 1}, "priority": {"null": 2}}), "{body}");
    assert_eq!(ids(&body["data"]), ["secret", "again"], "the focused row first: {body}");
    let (status, _) = http(&srv, ADMIN, "PATCH", "/api/entities/Todo/again", Some(json!({"status": "done", "priority": 3}))).await;
    assert_eq!(status, 200);
    let (_, body) = search(&srv, ADMIN, "q=milk&facets=status,priority").await;
    assert_eq!(body["facets"], json!({"status": {"done": 1, "hidden": 1}, "priority": {"3": 1, "null": 1}}), "{body}");
    assert_eq!(body["data"][1]["status"], "done");

    // Without q: every readable row the filter selects, facets over them.
    let (status, body) = search(&srv, &alice, "facets=status&limit=0").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["facets"]["status"].get("hidden").is_none());
    assert_eq!(body["data"], json!([]), "limit=0 answers counts only");
    assert!(body["total"].as_u64().unwrap() > 100);
    let (_, past) = search(&srv, &alice, "q=task&offset=100000").await;
    assert_eq!((past["data"].clone(), past["total"].as_u64().unwrap() > 0), (json!([]), true));
}

#[actix_web::test]
async fn hostile_search_text_is_answered_never_with_a_500() {
    let srv = server();
    seed(&srv, spread_todos(50)).await;
    for q in ["\"", "*", "NEAR(", "NEAR(task 1", "-", "-task", "AND OR", "task AND", "OR", "NOT task", "title:task", "^task",
              "task\"", "(", ")", "{notes}:x", "task*", "**", "a*b", "'", "\\", "\u{0}", "ta\u{301}sk", "🙂", "task + 1",
              "\"task\" NEAR/2 \"1\"", "rowid", "x OR 1=1; --", &"long ".repeat(60), &"w".repeat(300)] {
        for path in [format!("/api/search/Todo?q={}", enc(q))] {
            let (status, body) = http(&srv, ADMIN, "GET", &path, None).await;
            assert!(status == 200 || (status == 400 && code(&body) == "VALIDATION"), "{q:?} → {status} {body}");
        }
        let (status, body) = http(&srv, ADMIN, "POST", "/api/query/Todo", Some(json!({"$search": q}))).await;
        assert!(status == 200 || (status == 400 && code(&body) == "VALIDATION"), "$search {q:?} → {status} {body}");
    }
    for bad in ["q=task&facets=title", "q=task&nope=1", "q=task&limit=x", "q=task&filter=%7B", "q=task&filter=%7B%22nope%22%3A1%7D"] {
        let (status, body) = search(&srv, ADMIN, bad).await;
        assert_eq!((status, code(&body)), (400, "VALIDATION"), "{bad}: {body}");
    }
    let (status, body) = http(&srv, ADMIN, "GET", "/api/search/User?q=x", None).await;
    assert_eq!((status, code(&body)), (400, "VALIDATION"), "User declares no search: {body}");
}

#[actix_web::test]
async fn adding_search_indexes_existing_rows_and_removing_it_drops_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = || plaza::config::Config { in_memory: false, db: dir.path().join("plaza.db"), ..config() };
    let without: Value = {
        let mut m: Value = serde_json::from_str(MANIFEST).unwrap();
        m["entities"][1].as_object_mut().unwrap().remove("search");
        m
    };
    let srv = server_with(&without.to_string(), cfg());
    seed(&srv, spread_todos(30)).await;
    let (status, _) = search(&srv, ADMIN, "q=task").await;
    assert_eq!(status, 400, "no search declared yet");
    srv.stop().await;

    let srv = server_with(MANIFEST, cfg());
    let (status, body) = search(&srv, ADMIN, "q=task&limit=100").await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(30)), "{body}");
    // Rows indexed by the migration follow their updates and deletes like new ones.
    let (status, _) = http(&srv, ADMIN, "PATCH", "/api/entities/Todo/t0001", Some(json!({"title": "renamed chore"}))).await;
    assert_eq!(status, 200);
    let (status, _) = http(&srv, ADMIN, "DELETE", "/api/entities/Todo/t0002", None).await;
    assert_eq!(status, 200);
    let (_, body) = search(&srv, ADMIN, "q=task&limit=100").await;
    assert_eq!(body["total"].as_u64(), Some(28), "{body}");
    let (_, body) = search(&srv, ADMIN, "q=chore").await;
    assert_eq!(ids(&body["data"]), ["t0001"], "{body}");
    srv.stop().await;

    let srv = server_with(&without.to_string(), cfg());
    let (_, body) = http(&srv, ADMIN, "GET", "/api/entities/Todo?limit=100", None).await;
    assert_eq!(body["data"].as_array().map(Vec::len), Some(29), "every row kept when search goes: {body}");
    let (_, body) = http(&srv, ADMIN, "GET", "/api/entities/Todo/t0001", None).await;
    assert_eq!(body["title"], "renamed chore", "{body}");
    srv.stop().await;
    let conn = rusqlite::Connection::open(dir.path().join("plaza.db")).unwrap();
    let left: i64 = conn.query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE '_plaza_fts_%'", [], |r| r.get(0)).unwrap();
    assert_eq!(left, 0, "the index is dropped with search");
    let owner_index: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'Todo' AND sql LIKE '%ownerId%'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(owner_index, 1, "the table's indexes are made again after it is rebuilt");
}

#[actix_web::test]
async fn openapi_describes_the_query_routes() {
    let srv = server();
    let (_, doc) = http(&srv, ADMIN, "GET", "/api/openapi.json", None).await;
    let _: openapiv3::OpenAPI = serde_json::from_value(doc.clone()).expect("a valid OpenAPI 3.0 document");
    for (path, method, schema) in [
        ("/api/query", "post", "GraphQuery"),
        ("/api/link", "post", "LinkRequest"),
        ("/api/unlink", "post", "LinkRequest"),
        ("/api/aggregate/{Entity}", "post", "AggregateRequest"),
    ] {
        let op = &doc["paths"][path][method];
        assert_eq!(op["requestBody"]["content"]["application/json"]["schema"]["$ref"], format!("#/components/schemas/{schema}"), "{path}");
        assert!(op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].is_string(), "{path}");
    }
    let search = &doc["paths"]["/api/search/{Entity}"]["get"];
    let params: Vec<&str> = search["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(params, ["Entity", "q", "facets", "limit", "offset", "filter"]);
    assert!(doc["components"]["schemas"]["SearchResult"]["properties"]["facets"].is_object());
}

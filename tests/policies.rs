//! The policy matrix: an owner-only Todo, two users and a guest. Every path that returns or
//! accepts rows (get, list, cursor, query, sync pull, insert, update, delete, batch, transact)
//! shows each caller exactly what the policy allows.

mod common;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::App;
use common::*;
use plaza::config::Config;
use plaza_actors::AppManifest;
use serde_json::{json, Value};

const MANIFEST: &str = r#"{
  "entities": [{"name": "Todo", "fields": [
      {"name": "title", "type": "string"}, {"name": "ownerId", "type": "string"}]},
    {"name": "Note", "fields": [{"name": "body", "type": "string"}]}],
  "policies": [{"entity": "Todo",
      "read": "auth.userId == data.ownerId",
      "write": "auth.userId == data.ownerId",
      "insert": "auth.userId == data.ownerId && !auth.guest"}]
}"#;

fn bearer(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

fn ids(rows: &Value) -> Vec<String> {
    let mut v: Vec<String> = rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    v.sort();
    v
}

#[actix_web::test]
async fn each_caller_sees_and_changes_exactly_their_rows() {
    let state = plaza::build_state_with(config(), AppManifest::from_json(MANIFEST).unwrap()).unwrap();
    let app = test::init_service(App::new().configure(plaza::configure(state))).await;
    let mut tokens = Vec::new();
    for user in ["alice", "bob"] {
        let (_, s) = call(&app, post("/api/auth/session", json!({"user_id": user}))).await;
        tokens.push(s["token"].as_str().unwrap().to_string());
    }
    let (_, g) = call(&app, TestRequest::post().uri("/api/auth/guest").insert_header(("Origin", ORIGIN))).await;
    let guest = g["token"].as_str().unwrap().to_string();
    let (alice, bob) = (tokens[0].clone(), tokens[1].clone());

    let insert = |token: &str, owner: &str, title: &str| {
        bearer(TestRequest::post().uri("/api/entities/Todo"), token).set_json(json!({"title": title, "ownerId": owner}))
    };
    let mut owned: Vec<Vec<String>> = vec![vec![], vec![]];
    for (i, (token, owner)) in [(&alice, "alice"), (&bob, "bob")].into_iter().enumerate() {
        for n in 0..3 {
            let (status, body) = call(&app, insert(token, owner, &format!("{owner} {n}"))).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            owned[i].push(body["id"].as_str().unwrap().to_string());
        }
        owned[i].sort();
    }
    let (status, body) = call(&app, insert(&alice, "bob", "forged")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "cannot insert as someone else");
    let g_id = g["user_id"].as_str().unwrap();
    let (status, _) = call(&app, insert(&guest, g_id, "guest row")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the policy refuses guests");
    let (status, _) = call(&app, TestRequest::post().uri("/api/entities/Todo").insert_header(("Origin", ORIGIN)).set_json(json!({"title":"anon","ownerId":"alice"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "anonymous callers have no userId");

    // Alice deletes one of hers, so the log also holds a delete only she may see.
    let gone = owned[0].pop().unwrap();
    assert_eq!(call(&app, bearer(TestRequest::delete().uri(&format!("/api/entities/Todo/{gone}")), &alice)).await.0, StatusCode::OK);

    let callers = [(alice.as_str(), owned[0].clone(), owned[1].clone()), (bob.as_str(), owned[1].clone(), owned[0].clone()), (guest.as_str(), vec![], owned[0].clone())];
    for (token, mine, theirs) in &callers {
        let (_, list) = call(&app, bearer(get("/api/entities/Todo"), token)).await;
        assert_eq!(ids(&list["data"]), *mine, "list");
        assert_eq!(list["count"], mine.len());
        let (_, page) = call(&app, bearer(get("/api/entities/Todo/cursor?limit=2"), token)).await;
        let (_, rest) = call(&app, bearer(get(&format!("/api/entities/Todo/cursor?limit=10&after={}", page["next_cursor"].as_str().unwrap_or(""))), token)).await;
        let mut paged = ids(&page["data"]);
        if page["has_more"] == true {
            paged.extend(ids(&rest["data"]));
        }
        paged.sort();
        assert_eq!(paged, *mine, "cursor");
        let (_, queried) = call(&app, bearer(TestRequest::post().uri("/api/query/Todo"), token).set_json(json!({"title":{"$like":"%"}}))).await;
        assert_eq!(ids(&queried), *mine, "query");
        for id in mine {
            assert_eq!(call(&app, bearer(get(&format!("/api/entities/Todo/{id}")), token)).await.0, StatusCode::OK);
        }
        for id in theirs {
            let (status, body) = call(&app, bearer(get(&format!("/api/entities/Todo/{id}")), token)).await;
            assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "NOT_FOUND"), "others' rows look missing");
            let patch = bearer(TestRequest::patch().uri(&format!("/api/entities/Todo/{id}")), token).set_json(json!({"title":"mine now"}));
            assert_eq!(call(&app, patch).await.0, StatusCode::FORBIDDEN, "update of another's row");
            let del = bearer(TestRequest::delete().uri(&format!("/api/entities/Todo/{id}")), token);
            assert_eq!(call(&app, del).await.0, StatusCode::FORBIDDEN, "delete of another's row");
        }
        let (_, pulled) = call(&app, bearer(get("/api/sync/pull?since=0"), token)).await;
        let mut seen: Vec<String> = pulled["changes"].as_array().unwrap().iter().map(|c| c["row_id"].as_str().unwrap().to_string()).collect();
        seen.sort();
        seen.dedup();
        let mut expected = mine.clone();
        if *token == alice {
            expected.push(gone.clone());
            expected.sort();
        }
        assert_eq!(seen, expected, "sync pull shows only readable changes, deletes included");
        assert!(pulled["cursor"]["last_seq"].as_i64().unwrap() >= 7, "the cursor still moves past hidden changes");
    }
    // Giving a row away is an update the policy refuses (checked on the row after, too).
    let give = bearer(TestRequest::patch().uri(&format!("/api/entities/Todo/{}", owned[0][0])), &alice).set_json(json!({"ownerId":"bob"}));
    assert_eq!(call(&app, give).await.0, StatusCode::FORBIDDEN);

    // A transaction with one forbidden op commits nothing.
    let (_, before) = call(&app, admin(get("/api/sync/pull?since=0"))).await;
    let ops = json!([
        {"op":"insert","entity":"Todo","id":"tx1","data":{"title":"ok","ownerId":"bob"}},
        {"op":"update","entity":"Todo","id": owned[0][0],"data":{"title":"hijack"}}
    ]);
    let (status, body) = call(&app, bearer(TestRequest::post().uri("/api/transact"), &bob).set_json(ops)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    assert_eq!(call(&app, bearer(get("/api/entities/Todo/tx1"), &bob)).await.0, StatusCode::NOT_FOUND);
    let (_, after) = call(&app, admin(get("/api/sync/pull?since=0"))).await;
    assert_eq!(after["changes"], before["changes"]);
    // A batch applies the allowed op and refuses the other.
    let ops = json!({"operations": [
        {"op":"insert","entity":"Todo","id":"b1","data":{"title":"ok","ownerId":"bob"}},
        {"op":"delete","entity":"Todo","id": owned[0][0]}
    ]});
    let (_, body) = call(&app, bearer(TestRequest::post().uri("/api/batch"), &bob).set_json(ops)).await;
    assert_eq!((body["succeeded"].clone(), body["failed"].clone()), (json!(1), json!(1)));
    assert_eq!(body["results"][1]["error"]["code"], "FORBIDDEN");
    let (status, _) = call(&app, TestRequest::post().uri("/api/batch").insert_header(("Origin", ORIGIN)).set_json(json!([]))).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "bulk writes need a session");

    // Entities without a policy stay open (default allow); the admin sees everything.
    assert_eq!(call(&app, bearer(TestRequest::post().uri("/api/entities/Note"), &guest).set_json(json!({"body":"hi"}))).await.0, StatusCode::CREATED);
    let (_, all) = call(&app, admin(get("/api/entities/Todo"))).await;
    assert_eq!(all["count"], 6);
}

#[actix_web::test]
async fn default_deny_closes_entities_without_a_policy() {
    let config = Config { default_policy: "deny".into(), ..config() };
    let state = plaza::build_state_with(config, AppManifest::from_json(MANIFEST).unwrap()).unwrap();
    let app = test::init_service(App::new().configure(plaza::configure(state))).await;
    let (_, s) = call(&app, post("/api/auth/session", json!({"user_id":"alice"}))).await;
    let token = s["token"].as_str().unwrap();
    let (status, _) = call(&app, bearer(TestRequest::post().uri("/api/entities/Note"), token).set_json(json!({"body":"x"}))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(call(&app, post("/api/entities/Note", json!({"body":"by admin"}))).await.0, StatusCode::CREATED);
    let (_, list) = call(&app, bearer(get("/api/entities/Note"), token)).await;
    assert_eq!(list["count"], 0, "unreadable rows are filtered, not a 403");
}

#[test]
fn check_reports_policy_errors_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    std::fs::write(&path, MANIFEST.replace("auth.userId == data.ownerId && !auth.guest", "auth.userId == data.owner")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_plaza")).arg("check").arg("--manifest").arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy Todo.insert: line 1 column 16: Todo has no field 'owner'"), "{err}");
}

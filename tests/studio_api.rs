//! What Studio stands on, without a browser: its assets served from the binary (types, caching,
//! CSP, every module an import names), and the admin-only listings it reads — manifest, users,
//! sessions (with revoke), files, cache keys, cron — each refused to anyone but the admin.

mod common;

use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use common::*;
use serde_json::{json, Value};

/// Status, headers and raw body.
async fn fetch<S, B>(app: &S, req: TestRequest) -> (StatusCode, actix_web::http::header::HeaderMap, Vec<u8>)
where
    S: actix_web::dev::Service<actix_http::Request, Response = actix_web::dev::ServiceResponse<B>, Error = actix_web::Error>,
    B: actix_web::body::MessageBody,
{
    let resp = test::call_service(app, req.to_request()).await;
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, test::read_body(resp).await.to_vec())
}

fn header<'h>(headers: &'h actix_web::http::header::HeaderMap, name: &str) -> &'h str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

fn bearer(req: TestRequest, token: &str) -> TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}

#[actix_rt::test]
async fn studio_is_served_from_the_binary() {
    let app = app().await;
    let (status, headers, _) = fetch(&app, get("/studio")).await;
    assert_eq!((status, header(&headers, "location")), (StatusCode::PERMANENT_REDIRECT, "/studio/"));

    let (status, headers, body) = fetch(&app, get("/studio/")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    assert!(header(&headers, "content-security-policy").contains("script-src 'self'"), "{headers:?}");
    assert_eq!(header(&headers, "x-frame-options"), "DENY");
    let html = String::from_utf8(body).unwrap();
    assert!(html.contains("Sign in to Studio") && html.contains(r#"src="js/app.js""#), "{html}");

    // Unchanged assets revalidate to 304 by their ETag.
    let etag = header(&headers, "etag").to_string();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    let (status, _, body) = fetch(&app, get("/studio/index.html").insert_header(("If-None-Match", etag.as_str()))).await;
    assert_eq!((status, body.len()), (StatusCode::NOT_MODIFIED, 0));
    let (status, _, _) = fetch(&app, get("/studio/index.html").insert_header(("If-None-Match", "\"other\""))).await;
    assert_eq!(status, StatusCode::OK);

    for (path, ty) in [("/studio/style.css", "text/css; charset=utf-8"), ("/studio/favicon.svg", "image/svg+xml")] {
        let (status, headers, _) = fetch(&app, get(path)).await;
        assert_eq!((status, header(&headers, "content-type")), (StatusCode::OK, ty), "{path}");
    }

    // Every module the page loads, and every module they import, is there as JavaScript.
    let mut pending = vec!["app.js".to_string()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(module) = pending.pop() {
        if !seen.insert(module.clone()) {
            continue;
        }
        let (status, headers, body) = fetch(&app, get(&format!("/studio/js/{module}"))).await;
        assert_eq!(status, StatusCode::OK, "js/{module}");
        assert_eq!(header(&headers, "content-type"), "text/javascript; charset=utf-8");
        let text = String::from_utf8(body).unwrap();
        for line in text.lines().filter(|l| l.starts_with("import ")) {
            let name = line.rsplit("\"./").next().and_then(|s| s.split('"').next()).unwrap();
            pending.push(name.to_string());
        }
    }
    assert!(seen.len() >= 7, "{seen:?}");

    let (status, _, body) = fetch(&app, get("/studio/nope.js")).await;
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND"));
}

#[actix_rt::test]
async fn admin_listings_are_for_the_admin_only() {
    let app = app().await;
    let (_, session) = call(&app, post("/api/auth/session", json!({"user_id": "mallory"}))).await;
    let user_token = session["token"].as_str().unwrap().to_string();
    for path in ["/api/admin/manifest", "/api/admin/users", "/api/admin/sessions", "/api/admin/files", "/api/admin/cache", "/api/admin/cron"] {
        for req in [get(path), bearer(get(path), "wrong-token"), bearer(get(path), &user_token)] {
            let (status, body) = call(&app, req).await;
            assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"), "{path}: {body}");
        }
        let (status, body) = call(&app, admin(get(path))).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (status, body) = call(&app, bearer(TestRequest::delete().uri("/api/admin/sessions/x"), &user_token)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::FORBIDDEN, "FORBIDDEN"));
    let (status, body) = call(&app, admin(get("/api/admin/files?limit=lots"))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"), "{body}");
}

#[actix_rt::test]
async fn manifest_users_and_cron() {
    let app = app().await;
    let (_, manifest) = call(&app, admin(get("/api/admin/manifest"))).await;
    let todo = &manifest["entities"][0];
    assert_eq!(todo["name"], "Todo");
    let types: Vec<&str> = todo["fields"].as_array().unwrap().iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["string", "bool", "int", "datetime", "json", "id(User)"]);
    assert_eq!(todo["fields"][2]["optional"], true);

    let register = |email: &str| {
        TestRequest::post()
            .uri("/api/auth/password/register")
            .insert_header(("Origin", ORIGIN))
            .set_json(json!({"email": email, "password": "a long enough passphrase"}))
    };
    for email in ["grace@example.com", "linus@example.org"] {
        let (status, body) = call(&app, register(email)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (_, users) = call(&app, admin(get("/api/admin/users"))).await;
    let emails: Vec<&str> = users["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["linus@example.org", "grace@example.com"], "newest first: {users}");
    let grace = &users["users"][1];
    assert_eq!((grace["has_password"].clone(), grace["verified"].clone(), grace["totp_enabled"].clone()), (json!(true), json!(false), json!(false)));
    assert!(grace.get("password_hash").is_none() && !users.to_string().contains("argon2"), "{users}");
    let (_, found) = call(&app, admin(get("/api/admin/users?q=example.com"))).await;
    assert_eq!(found["users"].as_array().unwrap().len(), 1, "{found}");
    assert_eq!(found["users"][0]["email"], "grace@example.com");
    let (_, page) = call(&app, admin(get("/api/admin/users?limit=1&offset=1"))).await;
    assert_eq!(page["users"][0]["email"], "grace@example.com", "{page}");

    let (_, cron) = call(&app, admin(get("/api/admin/cron"))).await;
    let cleanup = cron["entries"].as_array().unwrap().iter().find(|e| e["name"] == "sessions_cleanup").expect("built-in entry");
    assert_eq!(cleanup["cron"], "0 */15 * * * *");
    let next = chrono::DateTime::parse_from_rfc3339(cleanup["next_fire"].as_str().unwrap()).unwrap();
    assert!(next > chrono::Utc::now() && next <= chrono::Utc::now() + chrono::Duration::minutes(15), "{cleanup}");
}

#[actix_rt::test]
async fn admin_lists_and_revokes_any_session() {
    let app = app().await;
    let mut tokens = Vec::new();
    for user in ["ann", "ann", "ben"] {
        let (status, s) = call(&app, post("/api/auth/session", json!({"user_id": user}))).await;
        assert_eq!(status, StatusCode::CREATED, "{s}");
        tokens.push(s["token"].as_str().unwrap().to_string());
    }
    let (_, all) = call(&app, admin(get("/api/admin/sessions"))).await;
    assert_eq!(all["total"], 3, "{all}");
    let (_, anns) = call(&app, admin(get("/api/admin/sessions?user_id=ann"))).await;
    let anns = anns["sessions"].as_array().unwrap().clone();
    assert_eq!(anns.len(), 2);
    assert!(anns.iter().all(|s| s["user_id"] == "ann" && s["kind"] == "session" && s["expires_at"].is_string()), "{anns:?}");
    assert!(!all.to_string().contains(&tokens[0][..22]), "a listing shows a token's selector");
    let (_, limited) = call(&app, admin(get("/api/admin/sessions?limit=1"))).await;
    assert_eq!((limited["sessions"].as_array().unwrap().len(), limited["total"].clone()), (1, json!(3)));

    // Which of ann's two is which: her own list marks the caller's as current.
    let (_, own) = call(&app, bearer(get("/api/auth/sessions"), &tokens[0])).await;
    let first_id = own["sessions"].as_array().unwrap().iter().find(|s| s["current"] == true).unwrap()["id"].as_str().unwrap().to_string();
    let (status, body) = call(&app, admin(TestRequest::delete().uri(&format!("/api/admin/sessions/{first_id}")))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"ok": true, "revoked": true})));
    let (status, _) = call(&app, bearer(get("/api/auth/me"), &tokens[0])).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a revoked session still works");
    let (status, me) = call(&app, bearer(get("/api/auth/me"), &tokens[1])).await;
    assert_eq!((status, me["user_id"].clone()), (StatusCode::OK, json!("ann")), "ann's other session ended too");
    let (status, body) = call(&app, admin(TestRequest::delete().uri(&format!("/api/admin/sessions/{first_id}")))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    let (_, all) = call(&app, admin(get("/api/admin/sessions"))).await;
    assert_eq!(all["total"], 2);
}

#[actix_rt::test]
async fn files_and_cache_keys_are_listed() {
    let app = app().await;
    const BOUNDARY: &str = "studioBoundary";
    for name in ["first.txt", "second.txt"] {
        let body = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\r\nhello\r\n--{BOUNDARY}--\r\n");
        let req = admin(TestRequest::post().uri("/api/files/upload"))
            .insert_header(("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}")))
            .set_payload(body);
        let (status, up) = call(&app, req).await;
        assert_eq!(status, StatusCode::CREATED, "{up}");
    }
    let (_, files) = call(&app, admin(get("/api/admin/files"))).await;
    let files = files["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 2, "{files:?}");
    let names: std::collections::BTreeSet<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["first.txt", "second.txt"].into());
    let f = &files[0];
    assert_eq!((f["owner"].clone(), f["size"].clone(), f["content_type"].clone()), (json!("admin"), json!(5), json!("text/plain; charset=utf-8")));
    assert_eq!(f["url"], format!("/api/files/{}", f["id"].as_str().unwrap()));
    let (_, page) = call(&app, admin(get("/api/admin/files?limit=1&offset=1"))).await;
    assert_eq!(page["files"].as_array().unwrap().len(), 1);
    assert_eq!(page["files"][0]["id"], files[1]["id"]);

    for (key, ttl) in [("user:2", Value::Null), ("user:1", json!(60)), ("session:9", Value::Null)] {
        let (status, body) = call(&app, post("/api/cache", json!({"cmd": "SET", "key": key, "value": {"k": key}, "ttl": ttl}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, listed) = call(&app, admin(get("/api/admin/cache?prefix=user:"))).await;
    let keys: Vec<&str> = listed["keys"].as_array().unwrap().iter().map(|k| k["key"].as_str().unwrap()).collect();
    assert_eq!((keys, listed["total"].clone()), (vec!["user:1", "user:2"], json!(2)), "{listed}");
    assert!(listed["keys"][0]["expires_at"].is_i64() && listed["keys"][1]["expires_at"].is_null(), "{listed}");
    assert!(listed["keys"][0]["bytes"].as_u64().unwrap() > 6);
    let (_, first) = call(&app, admin(get("/api/admin/cache?limit=1"))).await;
    assert_eq!((first["keys"].as_array().unwrap().len(), first["keys"][0]["key"].clone(), first["total"].clone()), (1, json!("session:9"), json!(3)));
}

#[actix_rt::test]
async fn metrics_show_the_write_queue() {
    let app = app().await;
    // An acknowledged write was committed with everything queued before it (start-up cron
    // bookkeeping included), so nothing waits behind it.
    let (status, body) = call(&app, admin(post("/api/entities/Todo", json!({"title": "t", "done": false})))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, m) = call(&app, get("/metrics")).await;
    assert_eq!(m["writer"]["queued_ops"], 0, "{m}");
    assert!(m["writer"]["in_flight_groups"].is_u64(), "{m}");
}

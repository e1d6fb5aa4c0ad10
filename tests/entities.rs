//! Entity API through the real app: lifecycle, list, cursor, query, and every error the
//! contract names.

mod common;

use actix_web::http::StatusCode;
use actix_web::test::TestRequest;
use common::*;
use serde_json::{json, Value};

#[actix_web::test]
async fn entity_lifecycle() {
    let app = app().await;
    let (status, body) = call(&app, post("/api/entities/Todo", json!({"title":"milk","done":true,"tags":["x"]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["id"].as_str().unwrap().to_string();

    let (status, row) = call(&app, get(&format!("/api/entities/Todo/{id}"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(row["title"], "milk");
    assert_eq!(row["done"], 1, "bool is returned as 0/1");
    assert_eq!(row["tags"], json!(["x"]));
    assert_eq!(row["priority"], Value::Null);
    assert!(row["createdAt"].as_str().unwrap().ends_with('Z'));

    let patch = admin(TestRequest::patch().uri(&format!("/api/entities/Todo/{id}")).set_json(json!({"done":false,"priority":3})));
    let (status, updated) = call(&app, patch).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["done"], 0);
    assert_eq!(updated["priority"], 3);
    assert_eq!(updated["title"], "milk");
    assert_eq!(updated["createdAt"], row["createdAt"]);

    let delete = || admin(TestRequest::delete().uri(&format!("/api/entities/Todo/{id}")));
    let (status, body) = call(&app, delete()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"deleted": true})));
    let (status, body) = call(&app, get(&format!("/api/entities/Todo/{id}"))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
    let (status, body) = call(&app, delete()).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "NOT_FOUND"));
}

async fn seed(app: &impl actix_web::dev::Service<actix_http::Request, Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, Error = actix_web::Error>, n: i64) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let row = json!({"title": format!("task {i}"), "done": i % 2 == 0, "priority": i});
        let (status, body) = call(app, post("/api/entities/Todo", row)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(body["id"].as_str().unwrap().to_string());
    }
    ids
}

#[actix_web::test]
async fn list_filters_orders_and_pages() {
    let app = app().await;
    let ids = seed(&app, 5).await;

    let (status, body) = call(&app, get("/api/entities/Todo")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["count"], 5);
    assert_eq!(body["limit"], 100);
    assert_eq!(body["data"][0]["id"], ids[0], "default order is insertion order");

    let (_, body) = call(&app, get("/api/entities/Todo?limit=2&offset=1")).await;
    assert_eq!((body["count"].clone(), body["offset"].clone(), body["limit"].clone()), (json!(2), json!(1), json!(2)));
    assert_eq!(body["data"][0]["id"], ids[1]);

    let (_, body) = call(&app, get("/api/entities/Todo?done=1")).await;
    assert_eq!(body["count"], 3);
    assert!(body["data"].as_array().unwrap().iter().all(|r| r["done"] == 1));

    let (_, body) = call(&app, get("/api/entities/Todo?order=-priority&limit=1")).await;
    assert_eq!(body["data"][0]["priority"], 4);

    let (status, body) = call(&app, get("/api/entities/Todo?nope=1")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"));
    let (status, body) = call(&app, get("/api/entities/Todo?priority=high")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"));
}

#[actix_web::test]
async fn cursor_pagination_visits_every_row_once() {
    let app = app().await;
    let ids = seed(&app, 7).await;
    let (mut seen, mut after) = (Vec::new(), String::new());
    for _ in 0..10 {
        let (status, page) = call(&app, get(&format!("/api/entities/Todo/cursor?limit=3&after={after}"))).await;
        assert_eq!(status, StatusCode::OK);
        seen.extend(page["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
        if page["has_more"] == false {
            assert_eq!(page["next_cursor"], Value::Null);
            break;
        }
        after = page["next_cursor"].as_str().unwrap().to_string();
    }
    assert_eq!(seen, ids);
    let (status, body) = call(&app, get("/api/entities/Todo/cursor?after=%%%")).await;
    assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"));
}

#[actix_web::test]
async fn query_language() {
    let app = app().await;
    seed(&app, 6).await;
    let q = |f: Value| post("/api/query/Todo", f);
    let titles = |body: &Value| body.as_array().unwrap().iter().map(|r| r["title"].as_str().unwrap().to_string()).collect::<Vec<_>>();

    let (status, body) = call(&app, q(json!({"priority":{"$gte":2,"$lt":4}}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(titles(&body), ["task 2", "task 3"]);
    let (_, body) = call(&app, q(json!({"priority":{"$in":[1,5]},"$order":{"priority":"desc"}}))).await;
    assert_eq!(titles(&body), ["task 5", "task 1"]);
    let (_, body) = call(&app, q(json!({"title":{"$like":"sk 4"}}))).await;
    assert_eq!(titles(&body), ["task 4"]);
    let (_, body) = call(&app, q(json!({"priority":{"$not":{"$gt":0}}}))).await;
    assert_eq!(titles(&body), ["task 0"]);
    let (_, body) = call(&app, q(json!({"priority":{"$ne":0},"done":true,"$limit":1,"$offset":1}))).await;
    assert_eq!(titles(&body), ["task 4"]);
    let (_, body) = call(&app, q(json!({"title":{"$in":[]}}))).await;
    assert_eq!(body, json!([]));

    for bad in [json!({"nope":1}), json!({"priority":{"$regex":"x"}}), json!({"priority":"high"}), json!([1])] {
        let (status, body) = call(&app, q(bad.clone())).await;
        assert_eq!((status, error_code(&body)), (StatusCode::BAD_REQUEST, "VALIDATION"), "{bad}");
    }
}

#[actix_web::test]
async fn errors_follow_the_contract() {
    let app = app().await;
    let cases: Vec<(TestRequest, StatusCode, &str)> = vec![
        (post("/api/entities/Nope", json!({})), StatusCode::NOT_FOUND, "UNKNOWN_ENTITY"),
        (get("/api/entities/Nope/1"), StatusCode::NOT_FOUND, "UNKNOWN_ENTITY"),
        (admin(TestRequest::post().uri("/api/entities/Todo").set_payload("{not json")), StatusCode::BAD_REQUEST, "INVALID_JSON"),
        (post("/api/entities/Todo", json!({"done":true})), StatusCode::BAD_REQUEST, "VALIDATION"),
        (post("/api/entities/Todo", json!({"title":1,"done":true})), StatusCode::BAD_REQUEST, "VALIDATION"),
        (post("/api/entities/Todo", json!({"title":"a","done":true,"color":"red"})), StatusCode::BAD_REQUEST, "VALIDATION"),
        (post("/api/entities/Todo", json!({"title":"a","done":true,"due":"tomorrow"})), StatusCode::BAD_REQUEST, "VALIDATION"),
        (post("/api/entities/Todo", json!(["a"])), StatusCode::BAD_REQUEST, "VALIDATION"),
        (get("/api/entities/Todo/missing"), StatusCode::NOT_FOUND, "NOT_FOUND"),
        (admin(TestRequest::patch().uri("/api/entities/Todo/missing").set_json(json!({"done":true}))), StatusCode::NOT_FOUND, "NOT_FOUND"),
        (get("/no/such/route"), StatusCode::NOT_FOUND, "ROUTE_NOT_FOUND"),
        (admin(TestRequest::put().uri("/api/entities/Todo")), StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
    ];
    for (req, status, code) in cases {
        let (got_status, body) = call(&app, req).await;
        assert_eq!((got_status, error_code(&body)), (status, code), "{body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    let user = json!({"email":"a@x.io","displayName":"A"});
    assert_eq!(call(&app, post("/api/entities/User", user.clone())).await.0, StatusCode::CREATED);
    let (status, body) = call(&app, post("/api/entities/User", user)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "CONFLICT"));
    let (status, body) = call(&app, post("/api/entities/User", json!({"id":"u1","email":"b@x.io","displayName":"B"}))).await;
    assert_eq!((status, body["id"].as_str()), (StatusCode::CREATED, Some("u1")), "a client may choose the id");
    let (status, body) = call(&app, post("/api/entities/User", json!({"id":"u1","email":"c@x.io","displayName":"C"}))).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "CONFLICT"));
}

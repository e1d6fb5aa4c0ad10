//! Shared test helpers: the real app built through `plaza::build_state` + `plaza::configure`,
//! and small request/response helpers.
#![allow(dead_code)]

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{test, App};
use plaza::config::Config;
use serde_json::Value;

pub const ADMIN: &str = "test-admin-token";
pub const ORIGIN: &str = "http://app.example";

pub fn todo_manifest() -> plaza_actors::AppManifest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/todo/plaza.json");
    plaza_actors::AppManifest::load(std::path::Path::new(path)).unwrap().unwrap()
}

/// In-memory, production mode, one allowed origin, an admin token, no rate limit.
pub fn config() -> Config {
    Config {
        admin_token: Some(ADMIN.into()),
        cors_origins: vec![ORIGIN.into()],
        ..Config::for_tests()
    }
}

pub async fn app_with(
    config: Config,
) -> impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    let state = plaza::build_state_with(config, todo_manifest()).unwrap();
    test::init_service(App::new().configure(plaza::configure(state))).await
}

pub async fn app() -> impl Service<actix_http::Request, Response = ServiceResponse<impl MessageBody>, Error = actix_web::Error> {
    app_with(config()).await
}

/// Status and JSON body (Null when the body is not JSON).
pub async fn call<S, B>(app: &S, req: test::TestRequest) -> (StatusCode, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = test::call_service(app, req.to_request()).await;
    let status = resp.status();
    let bytes = test::read_body(resp).await;
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub fn admin(req: test::TestRequest) -> test::TestRequest {
    req.insert_header(("Authorization", format!("Bearer {ADMIN}")))
}

pub fn post(path: &str, body: Value) -> test::TestRequest {
    admin(test::TestRequest::post().uri(path).set_json(body))
}

pub fn get(path: &str) -> test::TestRequest {
    test::TestRequest::get().uri(path)
}

pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

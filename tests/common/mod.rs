//! Shared test helpers: the real app built through `plaza::build_state` + `plaza::configure`,
//! and small request/response helpers; for the process-level tests, the built binary
//! ([`process`], [`serve`]) and requests to it over the network ([`remote`]).
#![allow(dead_code)]

pub mod live;
pub mod process;
pub mod remote;

use std::path::Path;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{test, App};
use plaza::config::Config;
use serde_json::Value;

pub const ADMIN: &str = "test-admin-token";
pub const ORIGIN: &str = "http://app.example";

pub const TODO_MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/todo/plaza.json");

pub fn todo_manifest() -> plaza_actors::AppManifest {
    plaza_actors::AppManifest::load(Path::new(TODO_MANIFEST)).unwrap().unwrap()
}

/// The `plaza` binary cargo built for these tests, no flags yet.
pub fn plaza() -> process::Launch {
    process::Launch::new(env!("CARGO_BIN_EXE_plaza"))
}

/// `plaza` serving the todo manifest over the database file `db`, on a free port, with
/// `admin_token`; add flags, then [`up`].
pub fn serve(db: &Path, admin_token: &str) -> process::Launch {
    plaza()
        .args(["--port", "0", "--admin-token", admin_token])
        .arg("--db")
        .arg(db)
        .arg("--manifest")
        .arg(TODO_MANIFEST)
}

/// Starts the server, failing the test with its log when it does not come up.
pub fn up(launch: process::Launch) -> process::PlazaProcess {
    launch.start().unwrap_or_else(|e| panic!("{e}"))
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

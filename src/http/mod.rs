//! HTTP routes, one module per route group. `routes` registers them all; `API_ROUTES` lists
//! them for the OpenAPI document (a test checks that every listed route is served).

pub mod admin;
pub mod auth;
pub mod entities;
pub mod events;
pub mod ops;
pub mod query;
pub mod sync;

use actix_web::{web, HttpRequest};

use crate::error::{ApiError, ApiResult};

/// Method, path (OpenAPI style, case as in API.md), summary, tag.
pub const API_ROUTES: &[(&str, &str, &str, &str)] = &[
    ("get", "/health", "Liveness: status, version, uptime", "ops"),
    ("get", "/ready", "Readiness: 503 while draining or when the database is unreachable", "ops"),
    ("get", "/metrics", "Metrics as JSON, or Prometheus text with Accept: text/plain", "ops"),
    ("get", "/api/openapi.json", "This document", "ops"),
    ("get", "/api/entities/{Entity}", "List rows: limit, offset, order, field filters", "entities"),
    ("post", "/api/entities/{Entity}", "Insert a row", "entities"),
    ("get", "/api/entities/{Entity}/cursor", "Keyset pagination: limit, after", "entities"),
    ("get", "/api/entities/{Entity}/{id}", "Get one row", "entities"),
    ("patch", "/api/entities/{Entity}/{id}", "Update fields of a row", "entities"),
    ("delete", "/api/entities/{Entity}/{id}", "Delete a row", "entities"),
    ("post", "/api/query/{Entity}", "Rows matching a filter", "entities"),
    ("post", "/api/query", "Graph query: rows of several entities with their relations included", "query"),
    ("post", "/api/link", "Set a relation: an ordinary update of the row holding its key", "query"),
    ("post", "/api/unlink", "Clear a relation, if it still points at the row named", "query"),
    ("post", "/api/aggregate/{Entity}", "count/sum/avg/min/max, optionally per groupBy, over readable rows", "query"),
    ("get", "/api/search/{Entity}", "Full-text search (FTS5, bm25) with facet counts: q, facets, limit, offset, filter", "query"),
    ("post", "/api/batch", "Independent writes (admin)", "admin"),
    ("post", "/api/transact", "All-or-nothing writes (admin)", "admin"),
    ("get", "/api/export", "Every row as NDJSON (admin)", "admin"),
    ("post", "/api/import", "Rows from NDJSON or a JSON array, all or nothing (admin)", "admin"),
    ("get", "/api/sync/pull", "Change-log events after a seq", "sync"),
    ("post", "/api/sync/push", "Apply offline changes; op_id makes retries safe", "sync"),
    ("get", "/api/events", "Server-Sent Events: live changes of an entity (Last-Event-ID resumes)", "realtime"),
    ("get", "/ws", "WebSocket: subscribe to changes (JSON frames, see API.md)", "realtime"),
    ("post", "/api/auth/session", "Session for a user id (admin or dev mode)", "auth"),
    ("post", "/api/auth/guest", "Guest session", "auth"),
    ("post", "/api/auth/magic/send", "Send a 6-digit sign-in code", "auth"),
    ("post", "/api/auth/magic/verify", "Exchange a code for a session", "auth"),
    ("get", "/api/auth/me", "The caller", "auth"),
    ("post", "/api/auth/logout", "Revoke the session", "auth"),
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    ops::routes(cfg);
    entities::routes(cfg);
    admin::routes(cfg);
    auth::routes(cfg);
    sync::routes(cfg);
    events::routes(cfg);
    query::routes(cfg);
}

pub async fn route_not_found(req: HttpRequest) -> ApiResult {
    Err(ApiError::RouteNotFound(format!("{} {}", req.method(), req.path())))
}

pub async fn method_not_allowed(req: HttpRequest) -> ApiResult {
    Err(ApiError::MethodNotAllowed(req.method().to_string()))
}

/// A resource whose unknown methods answer 405 with the JSON error body.
pub fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

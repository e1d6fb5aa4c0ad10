//! HTTP routes, one module per route group. `routes` registers them all; `API_ROUTES` lists
//! them for the OpenAPI document (a test checks that every listed route is served).

pub mod admin;
pub mod auth;
pub mod entities;
pub mod events;
pub mod ops;
pub mod rooms;
pub mod shards;
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
    ("post", "/api/rooms/join", "Join a room over HTTP (admin: for user_id); members expire after the HTTP member TTL", "rooms"),
    ("post", "/api/rooms/leave", "End an HTTP room membership", "rooms"),
    ("post", "/api/rooms/broadcast", "Send a room event to every member", "rooms"),
    ("post", "/api/rooms/presence", "Set a member's presence", "rooms"),
    ("post", "/api/rooms/state", "Apply an RFC 7386 merge patch to the room state", "rooms"),
    ("get", "/api/rooms", "Running rooms the caller may join, with member counts", "rooms"),
    ("get", "/api/rooms/{room}", "One room: members, seq, state; ?since=&epoch= adds the buffered events", "rooms"),
    ("get", "/api/shards", "Running shards: name, sim, tick_hz, tick, players, subscribers", "shards"),
    ("post", "/api/shards", "Start a shard {name, sim, tick_hz?, config?, persist?} (admin)", "shards"),
    ("get", "/api/shards/{id}", "A shard's last snapshot and tick", "shards"),
    ("delete", "/api/shards/{id}", "Stop a shard; a persisting one saves its snapshot (admin)", "shards"),
    ("post", "/api/shards/{id}/input", "Queue an input for the next tick as the session's user", "shards"),
    ("get", "/api/shards/{id}/connect", "Server-Sent Events: a shard's snapshots", "shards"),
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    ops::routes(cfg);
    entities::routes(cfg);
    admin::routes(cfg);
    auth::routes(cfg);
    sync::routes(cfg);
    events::routes(cfg);
    rooms::routes(cfg);
    shards::routes(cfg);
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

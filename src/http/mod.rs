//! HTTP routes, one module per route group. `routes` registers them all; `API_ROUTES` lists
//! them for the OpenAPI document (a test checks that every listed route is served).

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod cache;
pub mod entities;
pub mod events;
pub mod files;
pub mod jobs;
pub mod ops;
pub mod rooms;
pub mod shards;
pub mod studio;
pub mod pubsub;
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
    ("post", "/api/cache", "Cache command: SET, GET, DEL, INCR, EXPIRE (admin)", "cache"),
    ("get", "/api/cache/{key}", "A cached value (admin)", "cache"),
    ("delete", "/api/cache/{key}", "Remove a cached value (admin)", "cache"),
    ("post", "/api/pubsub/publish", "Publish a message to a topic's subscribed sockets", "pubsub"),
    ("post", "/api/jobs", "Enqueue a job (admin; sessions for jobs marked public)", "jobs"),
    ("get", "/api/jobs", "Jobs by status, newest first (admin)", "jobs"),
    ("get", "/api/jobs/{id}", "One job: status, attempts, errors, times", "jobs"),
    ("post", "/api/jobs/{id}/retry", "Make a dead job pending again (admin)", "jobs"),
    ("post", "/api/files/upload", "Upload a file (multipart field `file`, session required)", "files"),
    ("get", "/api/files/{id}", "Download a file", "files"),
    ("delete", "/api/files/{id}", "Delete a file (owner or admin)", "files"),
    ("post", "/api/auth/password/register", "Create an email + password account (201 session)", "accounts"),
    ("post", "/api/auth/password/login", "Sign in with email + password (201 session, or mfa_required)", "accounts"),
    ("post", "/api/auth/password/change", "Change the password; other sessions end", "accounts"),
    ("post", "/api/auth/password/reset/request", "Email a reset code (200 whether or not the account exists)", "accounts"),
    ("post", "/api/auth/password/reset/complete", "Set a new password with the code (201 session)", "accounts"),
    ("post", "/api/auth/email/send-verification", "Email a verification code to the account", "accounts"),
    ("post", "/api/auth/email/verify", "Confirm the email with the code (auth.verified)", "accounts"),
    ("post", "/api/auth/upgrade", "Turn the calling guest into an account, same user id", "accounts"),
    ("get", "/api/auth/sessions", "The caller's sessions", "accounts"),
    ("delete", "/api/auth/sessions/{id}", "Revoke one of the caller's sessions", "accounts"),
    ("get", "/api/auth/api-keys", "The caller's API keys", "accounts"),
    ("post", "/api/auth/api-keys", "Create an API key (shown once)", "accounts"),
    ("delete", "/api/auth/api-keys/{id}", "Revoke an API key", "accounts"),
    ("post", "/api/auth/totp/enroll", "Start TOTP enrolment: secret and otpauth URI", "accounts"),
    ("post", "/api/auth/totp/verify", "Confirm TOTP (backup codes), or finish a sign-in with mfa_token", "accounts"),
    ("post", "/api/auth/totp/disable", "Turn TOTP off with a code", "accounts"),
    ("get", "/api/auth/providers", "Configured OAuth / OpenID Connect sign-in providers", "accounts"),
    ("get", "/api/auth/login/{provider}", "302 to the provider (state + PKCE); ?return_to= on the allow-list", "accounts"),
    ("get", "/api/auth/callback/{provider}", "Provider callback: session cookie + 302 to the return URL", "accounts"),
    ("get", "/api/admin/manifest", "The app manifest as loaded (admin; Studio)", "admin"),
    ("get", "/api/admin/users", "Accounts, newest first: q, limit, offset (admin; Studio)", "admin"),
    ("get", "/api/admin/sessions", "Every session and API key: user_id, limit (admin; Studio)", "admin"),
    ("delete", "/api/admin/sessions/{id}", "Revoke any session or API key by its listed id (admin; Studio)", "admin"),
    ("get", "/api/admin/files", "Uploaded files, newest first: limit, offset (admin; Studio)", "admin"),
    ("get", "/api/admin/cache", "Cache keys in key order: prefix, limit (admin; Studio)", "admin"),
    ("get", "/api/admin/cron", "Cron entries with their last and next fire (admin; Studio)", "admin"),
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    ops::routes(cfg);
    entities::routes(cfg);
    admin::routes(cfg);
    auth::routes(cfg);
    accounts::routes(cfg);
    sync::routes(cfg);
    events::routes(cfg);
    rooms::routes(cfg);
    shards::routes(cfg);
    cache::routes(cfg);
    pubsub::routes(cfg);
    jobs::routes(cfg);
    files::routes(cfg);
    query::routes(cfg);
    studio::routes(cfg);
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

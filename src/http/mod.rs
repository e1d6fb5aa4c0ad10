//! HTTP routes, one module per route group. `routes` registers them all; `API_ROUTES` lists
//! them for the OpenAPI document (a test checks that every listed route is served).

pub mod accounts;
pub mod admin;
pub mod auth;
pub mod entities;
pub mod events;
pub mod ops;
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
];

pub fn routes(cfg: &mut web::ServiceConfig) {
    ops::routes(cfg);
    entities::routes(cfg);
    admin::routes(cfg);
    auth::routes(cfg);
    accounts::routes(cfg);
    sync::routes(cfg);
    events::routes(cfg);
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

//! The caller's sessions and API keys: list them, revoke one by id (its open streams close), and
//! mint API keys (shown once, stored as a hash like session tokens, `read` or `read_write`).

use actix_web::{web, HttpResponse};
use plaza_actors::sessions::manage::{IssueApiKey, ListSessions, RevokeById};
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::{session_user, text_field};
use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody};
use crate::http::resource;
use crate::AppState;

/// Longest API key name.
pub const MAX_KEY_NAME_LEN: usize = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/auth/sessions").route(web::get().to(list_sessions)))
        .service(resource("/api/auth/sessions/{id}").route(web::delete().to(revoke_session)))
        .service(resource("/api/auth/api-keys").route(web::get().to(list_keys)).route(web::post().to(create_key)))
        .service(resource("/api/auth/api-keys/{id}").route(web::delete().to(revoke_key)));
}

async fn list_sessions(state: web::Data<AppState>, auth: Auth) -> ApiResult {
    let user_id = session_user(&auth)?;
    let list = state.plaza.sessions.send(ListSessions { user_id, current: auth.ctx.session.clone(), keys: false }).await?;
    Ok(HttpResponse::Ok().json(json!({"sessions": list})))
}

async fn revoke(state: &AppState, auth: &Auth, id: String, keys: bool) -> ApiResult {
    let user_id = session_user(auth)?;
    if state.plaza.sessions.send(RevokeById { user_id, id: id.clone(), keys }).await?? {
        Ok(HttpResponse::Ok().json(json!({"ok": true, "revoked": true})))
    } else {
        let what = if keys { "API key" } else { "session" };
        Err(PlazaError::NotFound(format!("no {what} '{id}' on this account")).into())
    }
}

async fn revoke_session(state: web::Data<AppState>, auth: Auth, id: web::Path<String>) -> ApiResult {
    revoke(&state, &auth, id.into_inner(), false).await
}

async fn revoke_key(state: web::Data<AppState>, auth: Auth, id: web::Path<String>) -> ApiResult {
    revoke(&state, &auth, id.into_inner(), true).await
}

async fn list_keys(state: web::Data<AppState>, auth: Auth) -> ApiResult {
    let user_id = session_user(&auth)?;
    let list = state.plaza.sessions.send(ListSessions { user_id, current: None, keys: true }).await?;
    Ok(HttpResponse::Ok().json(json!({"api_keys": list})))
}

/// `{"name","scope":"read"|"read_write"}` → 201 with the key, which is never shown again.
/// Guests cannot hold keys (a key outlives the guest session by design).
async fn create_key(state: web::Data<AppState>, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    let user_id = session_user(&auth)?;
    if auth.ctx.guest {
        return Err(PlazaError::Forbidden("guests cannot create API keys; upgrade to an account first".into()).into());
    }
    let name = text_field(&body, "name")?;
    if name.trim().is_empty() || name.len() > MAX_KEY_NAME_LEN || name.chars().any(char::is_control) {
        return Err(PlazaError::Validation(format!("name must be 1 to {MAX_KEY_NAME_LEN} printable characters")).into());
    }
    let read_only = match body.get("scope").and_then(Value::as_str) {
        None | Some("read") => true,
        Some("read_write") => false,
        Some(other) => return Err(PlazaError::Validation(format!("scope must be 'read' or 'read_write', got '{other}'")).into()),
    };
    let max_keys = state.config.accounts.max_api_keys;
    let (issued, info) = state.plaza.sessions.send(IssueApiKey { user_id, name, read_only, max_keys }).await??;
    let mut body = serde_json::to_value(&info).unwrap_or(Value::Null);
    if let Some(obj) = body.as_object_mut() {
        obj.remove("current");
        obj.insert("key".into(), Value::String(issued.token));
    }
    Ok(HttpResponse::Created().json(body))
}

//! The admin's view of accounts and sign-ins (Studio): every account, every session and API key
//! of any user, and revoking any of them. Accounts are read from `_plaza_users` on the read
//! threads; sessions come from the `SessionStore`, which holds them.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use plaza_actors::accounts::list_users;
use plaza_actors::sessions::manage::{ListAll, RevokeAny};
use plaza_actors::PlazaError;
use serde_json::json;

use crate::error::ApiResult;
use crate::extract::{Admin, Page};
use crate::http::resource;
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/admin/users").route(web::get().to(users)))
        .service(resource("/api/admin/sessions").route(web::get().to(sessions)))
        .service(resource("/api/admin/sessions/{id}").route(web::delete().to(revoke)));
}

/// `?q=&limit=&offset=` → `{"users":[{id,email,verified,has_password,totp_enabled,created_at,
/// last_login_at}]}`, newest first; `q` matches part of the email.
async fn users(_: Admin, state: web::Data<AppState>, page: Page, query: web::Query<HashMap<String, String>>) -> ApiResult {
    let search = query.get("q").filter(|q| !q.is_empty()).cloned();
    let users = state.read(move |r| r.with_conn(|c| list_users(c, search.as_deref(), page.limit, page.offset))).await??;
    Ok(HttpResponse::Ok().json(json!({ "users": users, "limit": page.limit, "offset": page.offset })))
}

/// `?user_id=&limit=` → `{"sessions":[{user_id,guest,kind,id,created_at,last_used_at,...}],
/// "total"}`: sessions and API keys, newest first.
async fn sessions(_: Admin, state: web::Data<AppState>, page: Page, query: web::Query<HashMap<String, String>>) -> ApiResult {
    let user_id = query.get("user_id").filter(|u| !u.is_empty()).cloned();
    let (sessions, total) = state.plaza.sessions.send(ListAll { user_id, limit: page.limit }).await?;
    Ok(HttpResponse::Ok().json(json!({ "sessions": sessions, "total": total })))
}

/// Revokes any session or API key by its listed id → `{"ok":true,"revoked":true}`; 404 when
/// there is none. Its sockets and streams close.
async fn revoke(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let id = id.into_inner();
    if !state.plaza.sessions.send(RevokeAny { id: id.clone() }).await?? {
        return Err(PlazaError::NotFound(format!("no session '{id}'")).into());
    }
    Ok(HttpResponse::Ok().json(json!({ "ok": true, "revoked": true })))
}

//! Sessions over HTTP: admin/dev session minting, guests, magic codes, me, logout. Every
//! session issued is also set as the `plaza_session` cookie (HttpOnly, SameSite=Lax).

use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::{web, HttpRequest, HttpResponse};
use plaza_actors::sessions::{CreateGuest, CreateSession, IssueMagicCode, IssuedSession, Revoke, VerifyMagicCode};
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::accounts::meta;
use super::resource;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, JsonBody, SESSION_COOKIE};
use crate::AppState;

/// Longest user id a session may be minted for.
pub const MAX_USER_ID_LEN: usize = 128;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/auth/session").route(web::post().to(session)))
        .service(resource("/api/auth/guest").route(web::post().to(guest)))
        .service(resource("/api/auth/magic/send").route(web::post().to(magic_send)))
        .service(resource("/api/auth/magic/verify").route(web::post().to(magic_verify)))
        .service(resource("/api/auth/me").route(web::get().to(me)))
        .service(resource("/api/auth/logout").route(web::post().to(logout)));
}

pub(crate) fn session_cookie(state: &AppState, value: String, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.cookie_secure)
        .max_age(CookieDuration::seconds(max_age_secs))
        .finish()
}

pub(crate) fn issued(state: &AppState, session: IssuedSession) -> HttpResponse {
    let c = session_cookie(state, session.token.clone(), session.max_age_secs);
    let mut body = serde_json::to_value(&session).unwrap_or(Value::Null);
    if !session.guest {
        if let Some(obj) = body.as_object_mut() {
            obj.remove("guest");
        }
    }
    HttpResponse::Created().cookie(c).json(body)
}

fn text_field<'a>(body: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    body.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| PlazaError::Validation(format!("\"{name}\" (a string) is required")).into())
}

/// Only the admin, or anyone in dev mode: in production an anonymous caller must not mint a
/// session for an arbitrary user.
async fn session(state: web::Data<AppState>, req: HttpRequest, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    if !auth.ctx.admin && !state.config.dev_mode {
        return Err(PlazaError::Forbidden("minting sessions needs the admin token (or dev mode)".into()).into());
    }
    let user_id = text_field(&body, "user_id")?;
    if user_id.is_empty() || user_id.len() > MAX_USER_ID_LEN || user_id.chars().any(char::is_control) {
        return Err(PlazaError::Validation(format!("user_id must be 1 to {MAX_USER_ID_LEN} printable characters")).into());
    }
    let s = state.plaza.sessions.send(CreateSession { user_id: user_id.to_string(), meta: meta(&req) }).await??;
    Ok(issued(&state, s))
}

async fn guest(state: web::Data<AppState>, req: HttpRequest) -> ApiResult {
    let s = state.plaza.sessions.send(CreateGuest { meta: meta(&req) }).await??;
    Ok(issued(&state, s))
}

async fn magic_send(state: web::Data<AppState>, JsonBody(body): JsonBody) -> ApiResult {
    let email = text_field(&body, "email")?.to_string();
    let code = state.plaza.sessions.send(IssueMagicCode { email: email.clone() }).await??;
    state
        .mailer
        .send(&email, &code)
        .await
        .map_err(|e| PlazaError::Unavailable(format!("could not deliver the code: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({"sent": true})))
}

async fn magic_verify(state: web::Data<AppState>, req: HttpRequest, JsonBody(body): JsonBody) -> ApiResult {
    let email = text_field(&body, "email")?.to_string();
    let code = match body.get("code") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => format!("{:06}", n.as_u64().unwrap_or(u64::MAX)),
        _ => return Err(PlazaError::Validation("\"code\" is required".into()).into()),
    };
    let s = state.plaza.sessions.send(VerifyMagicCode { email, code, meta: meta(&req) }).await??;
    Ok(issued(&state, s))
}

async fn me(auth: Auth) -> ApiResult {
    if auth.ctx.user_id.is_none() && !auth.ctx.admin {
        return Err(ApiError::Unauthorized("no session: send Authorization: Bearer TOKEN or the plaza_session cookie".into()));
    }
    Ok(HttpResponse::Ok().json(json!({"user_id": auth.ctx.user_id, "guest": auth.ctx.guest, "admin": auth.ctx.admin})))
}

async fn logout(state: web::Data<AppState>, auth: Auth) -> ApiResult {
    let revoked = match (&auth.token, auth.ctx.admin) {
        (Some(token), false) => state.plaza.sessions.send(Revoke { token: token.clone() }).await??,
        _ => false,
    };
    if auth.ctx.user_id.is_none() {
        return Err(ApiError::Unauthorized("no session to log out of".into()));
    }
    let mut gone = session_cookie(&state, String::new(), 0);
    gone.make_removal();
    Ok(HttpResponse::Ok().cookie(gone).json(json!({"ok": true, "revoked": revoked})))
}

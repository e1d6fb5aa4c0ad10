//! The WebSocket endpoint `/ws`: one `Connection` actor per socket, on the stream core that it
//! shares with SSE (`crate::live`).

pub mod connection;
pub mod pubsub;

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use actix_web_actors::ws::WsResponseBuilder;
use plaza_actors::PlazaError;

use crate::error::{ApiError, ApiResult};
use crate::extract::{bearer_token, Auth, SESSION_COOKIE};
use crate::live::{StreamCore, StreamSlot};
use crate::AppState;
use connection::Connection;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/ws").route(web::get().to(upgrade)));
}

/// Credentials for a socket: `?token=`, a bearer header, or the session cookie. A cookie rides
/// along on cross-site requests, so with a cookie the Origin must be allowed (CSRF).
fn credential(req: &HttpRequest, state: &AppState, query_token: Option<&String>) -> Result<Option<String>, ApiError> {
    if let Some(t) = query_token.cloned().or_else(|| bearer_token(req).map(String::from)) {
        return Ok(Some(t));
    }
    let Some(cookie) = req.cookie(SESSION_COOKIE) else { return Ok(None) };
    let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
    match origin {
        Some(o) if state.config.csrf_allows(o) => Ok(Some(cookie.value().to_string())),
        _ => Err(ApiError::Csrf),
    }
}

async fn upgrade(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> ApiResult {
    if state.is_draining() {
        return Err(PlazaError::Unavailable("server is draining; reconnect shortly".into()).into());
    }
    let token = credential(&req, &state, query.get("token"))?;
    let auth = Auth::resolve(&state, token).await?;
    let slot = StreamSlot::reserve(&state, req.peer_addr().map(|a| a.ip()), &auth.ctx).await?;
    let conn = Connection::new(StreamCore::new(state.clone(), auth.ctx, slot));
    WsResponseBuilder::new(conn, &req, body)
        .frame_size(state.config.ws_max_frame_bytes)
        .start()
        .map_err(|e| ApiError::BadRequest(format!("WebSocket handshake failed: {e}")))
}

//! Live streams: the WebSocket endpoint (`/ws`, one `Connection` actor per socket) and the
//! pieces it shares with Server-Sent Events (`/api/events`): stream slots, replay, frames.

pub mod connection;
pub mod stream;

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest};
use actix_web_actors::ws::WsResponseBuilder;
use plaza_actors::PlazaError;

use crate::error::{ApiError, ApiResult};
use crate::extract::{bearer_token, Auth, SESSION_COOKIE};
use crate::AppState;
use connection::Connection;
use stream::StreamSlot;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/ws").route(web::get().to(upgrade)));
}

/// Credentials for a stream: `?token=`, a bearer header, or the session cookie. A cookie rides
/// along on cross-site requests, so with a cookie the Origin must be allowed (CSRF).
fn stream_credential(req: &HttpRequest, state: &AppState, query_token: Option<&String>) -> Result<Option<String>, ApiError> {
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
    let token = stream_credential(&req, &state, query.get("token"))?;
    let auth = Auth::resolve(&state, token).await?;
    let slot = StreamSlot::acquire(&state, req.peer_addr().map(|a| a.ip()))?;
    let conn = Connection::new(state.clone(), auth.ctx, slot);
    WsResponseBuilder::new(conn, &req, body)
        .frame_size(state.config.ws_max_frame_bytes)
        .start()
        .map_err(|e| ApiError::BadRequest(format!("WebSocket handshake failed: {e}")))
}

/// Parses the `filter` query parameter (URL-encoded filter JSON) for SSE.
pub fn filter_param(query: &HashMap<String, String>) -> Result<Option<serde_json::Value>, ApiError> {
    query
        .get("filter")
        .filter(|f| !f.is_empty())
        .map(|f| serde_json::from_str(f).map_err(|e| PlazaError::Validation(format!("filter is not JSON: {e}")).into()))
        .transpose()
}

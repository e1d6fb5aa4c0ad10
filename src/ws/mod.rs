//! The WebSocket endpoint `/ws`: one `Connection` actor per socket, on the stream core that it
//! shares with SSE (`crate::live`).

pub mod connection;
pub mod pubsub;

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use actix_web_actors::ws::WsResponseBuilder;
use plaza_actors::PlazaError;

use crate::error::{ApiError, ApiResult};
use crate::extract::{bearer_token, Auth, SESSION_COOKIE};
use crate::live::{StreamCore, StreamSlot};
use crate::middleware::caller::caller_ip;
use crate::AppState;
use connection::Connection;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(crate::http::resource("/ws").route(web::get().to(upgrade)));
}

/// Who opens a socket: `?token=`, else the request's own credential (bearer header, or the
/// session cookie — already resolved by the `identify` middleware). A cookie rides along on
/// cross-site requests, so with a cookie the Origin must be allowed (CSRF).
async fn caller(req: &HttpRequest, state: &AppState, query_token: Option<&String>) -> Result<Auth, ApiError> {
    if let Some(t) = query_token {
        return Auth::resolve(state, Some(t.clone())).await;
    }
    if bearer_token(req).is_none() && req.cookie(SESSION_COOKIE).is_some() {
        let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if !origin.is_some_and(|o| state.config.csrf_allows(o)) {
            return Err(ApiError::Csrf);
        }
    }
    Auth::extract(req).await
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
    let auth = caller(&req, &state, query.get("token")).await?;
    let slot = StreamSlot::reserve(&state, caller_ip(&req), &auth.ctx).await?;
    let conn = Connection::new(StreamCore::new(state.clone(), auth.ctx, slot));
    WsResponseBuilder::new(conn, &req, body)
        .frame_size(state.config.ws_max_frame_bytes)
        .start()
        .map_err(|e| ApiError::BadRequest(format!("WebSocket handshake failed: {e}")))
}

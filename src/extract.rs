//! Request extractors shared by every route group: a size-limited body, JSON bodies with
//! the API's own errors, and the caller's identity.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde_json::Value;

use crate::error::ApiError;
use crate::AppState;

pub fn state(req: &HttpRequest) -> Result<&web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Plaza(plaza_actors::PlazaError::Internal("app state missing".into())))
}

/// The raw body, refused with 413 past `PLAZA_MAX_BODY_BYTES` (by Content-Length when
/// declared, else while streaming).
pub struct LimitedBody(pub web::Bytes);

impl FromRequest for LimitedBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = state(req).map(|s| s.config.max_body_bytes).unwrap_or(crate::config::DEFAULT_MAX_BODY_BYTES);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > limit) {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("could not read the body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(LimitedBody(body.freeze()))
        })
    }
}

/// A JSON body: 400 `INVALID_JSON` when it does not parse. Content-Type is not insisted on, so
/// `curl -d` works as people type it.
pub struct JsonBody(pub Value);

impl FromRequest for JsonBody {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = LimitedBody::from_request(req, payload);
        Box::pin(async move {
            let LimitedBody(bytes) = body.await?;
            serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| ApiError::InvalidJson(e.to_string()))
        })
    }
}

/// Who is calling. Sessions (users, guests) extend this; today a caller is the admin or
/// anonymous.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub admin: bool,
    pub user_id: Option<String>,
    pub guest: bool,
}

/// Longest credential we look at; anything longer is refused before any comparison.
pub const MAX_TOKEN_LEN: usize = 512;

/// The bearer token, if the request carries one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

impl Auth {
    pub fn from_request_parts(req: &HttpRequest) -> Result<Auth, ApiError> {
        let Some(token) = bearer_token(req) else { return Ok(Auth::default()) };
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::Unauthorized("malformed bearer token".into()));
        }
        let admin_token = state(req)?.config.admin_token.as_deref();
        if admin_token.is_some_and(|a| constant_time_eq::constant_time_eq(a.as_bytes(), token.as_bytes())) {
            return Ok(Auth { admin: true, ..Auth::default() });
        }
        Err(ApiError::Unauthorized("invalid or expired token".into()))
    }

}

/// Admin endpoints: anything but the admin token (none, a wrong one, a user's) is 403.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(match Auth::from_request_parts(req) {
            Ok(Auth { admin: true, .. }) => Ok(Admin),
            _ => Err(ApiError::AdminRequired),
        })
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Auth, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Auth::from_request_parts(req))
    }
}

//! Request extractors shared by every route group: a size-limited body, JSON bodies with
//! the API's own errors, and the caller's identity.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use futures_util::StreamExt;
use serde_json::Value;

use plaza_actors::model::policy::AuthContext;
use plaza_actors::sessions::Resolve;

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

/// Who a request comes from, as the `identify` middleware found it once per request; `auth`
/// is the `Auth` extractor's answer (401 for a bad token).
#[derive(Debug, Clone)]
pub struct Caller {
    pub ip: IpAddr,
    pub auth: Result<Auth, ApiError>,
}

/// Who is calling, and with which credential (logout revokes it).
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub ctx: AuthContext,
    pub token: Option<String>,
}

/// Longest credential we look at; anything longer is refused before any lookup.
pub const MAX_TOKEN_LEN: usize = 512;
pub const SESSION_COOKIE: &str = "plaza_session";

/// The bearer token, if the request carries one.
pub fn bearer_token(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The credential: a bearer token, else the session cookie.
pub fn credential(req: &HttpRequest) -> Option<String> {
    bearer_token(req)
        .map(str::to_string)
        .or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_string()))
}

impl Auth {
    /// Anonymous without a credential; admin for the admin token; otherwise the session's
    /// caller, or 401 for a token that is malformed, unknown, revoked or expired.
    pub async fn resolve(state: &AppState, token: Option<String>) -> Result<Auth, ApiError> {
        let Some(token) = token else { return Ok(Auth::default()) };
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(ApiError::Unauthorized("malformed token".into()));
        }
        if state.config.admin_token.as_deref().is_some_and(|a| constant_time_eq::constant_time_eq(a.as_bytes(), token.as_bytes())) {
            return Ok(Auth { ctx: AuthContext::admin(), token: Some(token) });
        }
        match state.plaza.sessions.send(Resolve { token: token.clone() }).await? {
            Some(ctx) => Ok(Auth { ctx, token: Some(token) }),
            None => Err(ApiError::Unauthorized("invalid or expired token".into())),
        }
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Auth, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // Resolved once per request by the `identify` middleware (the rate limit keys on it).
        if let Some(caller) = req.extensions().get::<Caller>() {
            let auth = caller.auth.clone();
            return Box::pin(async move { auth });
        }
        let state = state(req).cloned();
        let token = credential(req);
        Box::pin(async move { Auth::resolve(&*state?, token).await })
    }
}

/// Admin endpoints: anything but the admin token (none, a wrong one, a user's) is 403.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let admin = state(req).ok().and_then(|s| s.config.admin_token.clone());
        let presented = bearer_token(req).unwrap_or_default();
        std::future::ready(match admin {
            Some(a) if constant_time_eq::constant_time_eq(a.as_bytes(), presented.as_bytes()) => Ok(Admin),
            _ => Err(ApiError::AdminRequired),
        })
    }
}

/// Callers with an identity (a session or the admin): bulk writes, which policies then check
/// op by op. Anonymous callers and bad tokens get 403, like the admin endpoints.
pub struct Member(pub Auth);

impl FromRequest for Member {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Member, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let auth = Auth::from_request(req, payload);
        Box::pin(async move {
            match auth.await {
                Ok(a) if a.ctx.admin || a.ctx.user_id.is_some() => Ok(Member(a)),
                _ => Err(plaza_actors::PlazaError::Forbidden("this endpoint needs a session or the admin token".into()).into()),
            }
        })
    }
}

/// `?limit=&offset=` of the admin listings: `limit` defaults to [`Page::DEFAULT_LIMIT`] and is
/// clamped to [`Page::MAX_LIMIT`]; anything but a non-negative integer is 400 `VALIDATION`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: usize,
    pub offset: usize,
}

impl Page {
    pub const DEFAULT_LIMIT: usize = 100;
    pub const MAX_LIMIT: usize = 1000;
}

impl FromRequest for Page {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Page, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default();
        let number = |name: &str, default: usize| match query.get(name).filter(|v| !v.is_empty()) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().map_err(|_| {
                ApiError::from(plaza_actors::PlazaError::Validation(format!("{name} must be a non-negative integer, got '{v}'")))
            }),
        };
        std::future::ready((|| {
            Ok(Page { limit: number("limit", Page::DEFAULT_LIMIT)?.min(Page::MAX_LIMIT), offset: number("offset", 0)? })
        })())
    }
}

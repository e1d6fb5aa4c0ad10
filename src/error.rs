//! `ApiError`: every failure a client can see, mapped to its status and the JSON body
//! `{"error":{"code","message"}}` in exactly one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use plaza_actors::PlazaError;
use serde_json::{json, Value};
use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum ApiError {
    /// Displayed as what a client may read: storage and internal failures say what failed,
    /// never SQLite's text (that goes to the log, with the request id).
    #[error("{}", public_message(.0))]
    Plaza(#[from] PlazaError),
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method {0} is not allowed here")]
    MethodNotAllowed(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("this endpoint needs the admin token (Authorization: Bearer $PLAZA_ADMIN_TOKEN)")]
    AdminRequired,
    #[error("state-changing request without a bearer token needs an allowed Origin header")]
    Csrf,
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("rate limit exceeded; retry in {0} s")]
    RateLimited(u64),
    #[error("at most {0} open WebSockets and SSE streams per client IP")]
    TooManyStreams(usize),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Plaza(e) => match e {
                PlazaError::UnknownEntity(_) => "UNKNOWN_ENTITY",
                PlazaError::Validation(_) => "VALIDATION",
                PlazaError::Conflict(_) | PlazaError::Duplicate(_) => "CONFLICT",
                PlazaError::NotFound(_) => "NOT_FOUND",
                PlazaError::Forbidden(_) => "FORBIDDEN",
                PlazaError::Unauthorized(_) => "UNAUTHORIZED",
                PlazaError::RateLimited { .. } => "RATE_LIMITED",
                PlazaError::ResyncRequired { .. } => "RESYNC_REQUIRED",
                PlazaError::Unavailable(_) => "UNAVAILABLE",
                PlazaError::Overloaded { .. } => "OVERLOADED",
                PlazaError::Internal(_) | PlazaError::Storage { .. } => "INTERNAL",
                PlazaError::Room(r) => r.code(),
            },
            ApiError::InvalidJson(_) => "INVALID_JSON",
            ApiError::RouteNotFound(_) => "ROUTE_NOT_FOUND",
            ApiError::MethodNotAllowed(_) => "METHOD_NOT_ALLOWED",
            ApiError::BadRequest(_) => "BAD_REQUEST",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::AdminRequired => "FORBIDDEN",
            ApiError::Csrf => "CSRF",
            ApiError::PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            ApiError::RateLimited(_) => "RATE_LIMITED",
            ApiError::TooManyStreams(_) => "TOO_MANY_CONNECTIONS",
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({"code": self.code(), "message": self.to_string()});
        if let ApiError::Plaza(PlazaError::ResyncRequired { oldest_seq, last_seq }) = self {
            // Also at the top level, where sync clients look for where to restart.
            error["oldest_seq"] = json!(oldest_seq);
            error["last_seq"] = json!(last_seq);
            return json!({ "error": error, "oldest_seq": oldest_seq });
        }
        if let Some(Value::Object(details)) = self.room_details() {
            error.as_object_mut().into_iter().for_each(|e| e.extend(details.clone()));
        }
        json!({ "error": error })
    }

    fn room_details(&self) -> Option<Value> {
        match self {
            ApiError::Plaza(PlazaError::Room(r)) => r.details(),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Plaza(e) => match e {
                PlazaError::UnknownEntity(_) | PlazaError::NotFound(_) => StatusCode::NOT_FOUND,
                PlazaError::Validation(_) => StatusCode::BAD_REQUEST,
                PlazaError::Conflict(_) | PlazaError::Duplicate(_) => StatusCode::CONFLICT,
                PlazaError::Forbidden(_) => StatusCode::FORBIDDEN,
                PlazaError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
                PlazaError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                PlazaError::ResyncRequired { .. } => StatusCode::GONE,
                PlazaError::Unavailable(_) | PlazaError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
                PlazaError::Internal(_) | PlazaError::Storage { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                PlazaError::Room(r) => StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST),
            },
            ApiError::InvalidJson(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::AdminRequired | ApiError::Csrf => StatusCode::FORBIDDEN,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited(_) | ApiError::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            // Inside the request's span, so the line carries its request id; Debug keeps the
            // detail the client does not get.
            tracing::error!(error = ?self, "request failed");
        }
        let mut resp = HttpResponse::build(status);
        match self {
            ApiError::RateLimited(secs)
            | ApiError::Plaza(PlazaError::RateLimited { retry_after_secs: secs })
            | ApiError::Plaza(PlazaError::Overloaded { retry_after_secs: secs }) => {
                resp.insert_header(("Retry-After", secs.to_string()));
            }
            _ => {}
        }
        resp.json(self.body())
    }
}

fn public_message(e: &PlazaError) -> String {
    match e {
        PlazaError::Storage { failed, .. } => failed.clone(),
        PlazaError::Internal(_) => "internal error; the details are in the server log".into(),
        other => other.to_string(),
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Plaza(e.into())
    }
}

pub type ApiResult<T = HttpResponse> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_never_reach_the_body() {
        let storage = ApiError::from(PlazaError::Storage {
            failed: "the database could not complete the write".into(),
            detail: "disk I/O error: /var/lib/plaza/plaza.db".into(),
        });
        assert_eq!(storage.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(storage.body(), json!({"error": {"code": "INTERNAL", "message": "the database could not complete the write"}}));
        assert_eq!(storage.to_string(), "the database could not complete the write", "WS error frames use Display");
        assert!(format!("{storage:?}").contains("disk I/O error"), "the log line keeps the detail");
        let internal = ApiError::from(PlazaError::Internal("serde: key must be a string at line 1".into()));
        assert!(!internal.body().to_string().contains("serde"));
        let conflict = ApiError::from(PlazaError::Conflict("Todo 'a' already exists".into()));
        assert_eq!(conflict.body()["error"]["message"], "Todo 'a' already exists", "client errors keep their message");
    }
}

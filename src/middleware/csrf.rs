//! CSRF: a state-changing request that carries no bearer token (so it rides on a cookie or on
//! nothing) must come from an allowed Origin; dev mode accepts any Origin that is present.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, Error, ResponseError};

use crate::error::ApiError;
use crate::extract::bearer_token;
use crate::AppState;

pub async fn check(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state && bearer_token(req.request()).is_none() {
        let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
        let allowed = match (origin, req.app_data::<web::Data<AppState>>()) {
            (Some(origin), Some(state)) => state.config.csrf_allows(origin),
            _ => false,
        };
        if !allowed {
            let (req, _) = req.into_parts();
            return Ok(ServiceResponse::new(req, ApiError::Csrf.error_response()).map_into_right_body());
        }
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

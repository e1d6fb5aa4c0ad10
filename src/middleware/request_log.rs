//! One access-log line per request (method, route, status, latency) and the same figures into
//! the metrics registry.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage};

use crate::AppState;

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let method = req.method().to_string();
    let path = req.path().to_string();
    let res = next.call(req).await?;
    let elapsed = started.elapsed();
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16();
    if let Some(state) = state {
        state.metrics.observe(&route, &method, status, elapsed.as_secs_f64());
    }
    tracing::info!(target: "plaza::access", %method, %path, status, latency_ms = elapsed.as_secs_f64() * 1000.0);
    Ok(res)
}

/// The per-request span (tracing-actix-web): just the request id, so every line logged while
/// serving a request can be tied to it; method, route, status and latency go on the access line.
pub struct RequestSpan;

impl tracing_actix_web::RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> tracing::Span {
        let id = request.extensions().get::<tracing_actix_web::RequestId>().copied();
        tracing::info_span!("req", id = %id.map(|i| i.to_string()).unwrap_or_default())
    }

    fn on_request_end<B: MessageBody>(_: tracing::Span, _: &Result<ServiceResponse<B>, Error>) {}
}

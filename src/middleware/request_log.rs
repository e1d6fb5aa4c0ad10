//! One access-log line per request (method, route, status, latency) and the same figures into
//! the metrics registry, inside a span carrying the request's id so every line logged while
//! serving it can be tied to it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};
use tracing::Instrument;

use crate::AppState;

/// Request ids: unique within this process, cheap to make (a counter, not a random UUID).
static NEXT_REQUEST_ID: AtomicU64 = AtomicU64::new(1);

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let span = tracing::info_span!("req", id = NEXT_REQUEST_ID.fetch_add(1, Ordering::Relaxed));
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).instrument(span.clone()).await?;
    let elapsed = started.elapsed();
    let request = res.request();
    let route = request.match_pattern();
    let method = request.method().as_str();
    let status = res.status().as_u16();
    if let Some(state) = state {
        state.metrics.observe(route.as_deref().unwrap_or("unmatched"), method, status, elapsed.as_secs_f64());
    }
    let _in_request = span.enter();
    tracing::info!(target: "plaza::access", %method, path = %request.path(), status, latency_ms = elapsed.as_secs_f64() * 1000.0);
    Ok(res)
}

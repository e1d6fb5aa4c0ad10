//! Per-client rate limit (GCRA via actix-governor): keyed by bearer token, else by peer IP;
//! the admin token is exempt. Over the limit: 429 with `Retry-After` and the JSON error body.

use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::governor::NotUntil;
use actix_governor::{GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError};
use actix_web::dev::ServiceRequest;
use actix_web::{HttpResponse, HttpResponseBuilder};
use std::time::Duration;

use crate::config::Config;
use crate::error::ApiError;
use crate::extract::bearer_token;

#[derive(Clone, Default)]
pub struct ClientKey {
    exempt: Vec<String>,
}

impl KeyExtractor for ClientKey {
    type Key = String;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<String, Self::KeyExtractionError> {
        Ok(match bearer_token(req.request()) {
            Some(token) => format!("token:{token}"),
            None => format!("ip:{}", req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default()),
        })
    }

    fn exceed_rate_limit_response(&self, negative: &NotUntil<QuantaInstant>, mut response: HttpResponseBuilder) -> HttpResponse {
        let wait = negative.wait_time_from(DefaultClock::default().now()).as_secs().max(1);
        response.json(ApiError::RateLimited(wait).body())
    }

    fn whitelisted_keys(&self) -> Vec<String> {
        self.exempt.clone()
    }
}

/// The limiter's shared state; built (but not mounted) when limiting is off, because the
/// middleware slot is fixed at app build time.
#[derive(Clone)]
pub struct Limiter {
    pub enabled: bool,
    pub config: GovernorConfig<ClientKey, NoOpMiddleware<QuantaInstant>>,
}

/// `max` requests per `window`, refilled evenly, with a full window's burst allowed.
pub fn limiter(config: &Config) -> Result<Limiter, String> {
    let max = u32::try_from(config.rate_limit_max.max(1)).unwrap_or(u32::MAX);
    let window = Duration::from_secs(config.rate_limit_window_secs.max(1));
    let exempt = config.admin_token.iter().map(|t| format!("token:{t}")).collect();
    let built = GovernorConfigBuilder::default()
        .period((window / max).max(Duration::from_nanos(1)))
        .burst_size(max)
        .key_extractor(ClientKey { exempt })
        .finish()
        .ok_or_else(|| "invalid rate limit settings".to_string())?;
    Ok(Limiter { enabled: config.rate_limit_max > 0, config: built })
}

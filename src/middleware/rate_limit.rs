//! Per-client rate limits (GCRA via actix-governor), keyed by who the request really is (see
//! `caller`): a valid session counts against its user, the admin token is exempt, anything else
//! (no token, a made-up or expired one) against the client IP, so inventing tokens buys nothing.
//! Session creation has a second, per-IP limit of its own. Over a limit: 429 `RATE_LIMITED`
//! with `Retry-After`. Idle keys are pruned in the background.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::governor::NotUntil;
use actix_governor::{GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError};
use actix_web::dev::ServiceRequest;
use actix_web::http::Method;
use actix_web::{HttpMessage, HttpResponse, HttpResponseBuilder, ResponseError};

use crate::config::Config;
use crate::error::ApiError;
use crate::middleware::caller::Caller;

/// How often idle keys are dropped from the limiters' maps.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// Routes that create a session; each gets the session-creation limit.
pub const SESSION_CREATION_PATHS: &[&str] = &[
    "/api/auth/guest",
    "/api/auth/session",
    "/api/auth/magic/send",
    "/api/auth/magic/verify",
    "/api/auth/password/register",
    "/api/auth/password/login",
    "/api/auth/password/reset/complete",
    "/api/auth/upgrade",
    "/api/auth/totp/verify",
];

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// Never limited: the admin, or a request a limiter does not apply to.
    Exempt,
    User(String),
    Ip(IpAddr),
}

fn caller_key(req: &ServiceRequest) -> ClientKey {
    let ext = req.extensions();
    match ext.get::<Caller>() {
        Some(Caller { auth: Ok(auth), .. }) if auth.ctx.admin => ClientKey::Exempt,
        Some(Caller { auth: Ok(auth), ip }) => auth.ctx.user_id.clone().map_or(ClientKey::Ip(*ip), ClientKey::User),
        Some(Caller { ip, .. }) => ClientKey::Ip(*ip),
        // Only if `identify` did not run (no app state): the peer, never a header.
        None => ClientKey::Ip(req.peer_addr().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip())),
    }
}

fn too_many(negative: &NotUntil<QuantaInstant>) -> HttpResponse {
    // Rounded up: "retry in 0 s" would invite an immediate, refused retry.
    let wait = negative.wait_time_from(DefaultClock::default().now());
    ApiError::RateLimited(wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).error_response()
}

/// Every request: by user, else by IP.
#[derive(Clone, Default)]
pub struct ByCaller;

impl KeyExtractor for ByCaller {
    type Key = ClientKey;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<ClientKey, Self::KeyExtractionError> {
        Ok(caller_key(req))
    }

    fn exceed_rate_limit_response(&self, negative: &NotUntil<QuantaInstant>, _: HttpResponseBuilder) -> HttpResponse {
        too_many(negative)
    }

    fn whitelisted_keys(&self) -> Vec<ClientKey> {
        vec![ClientKey::Exempt]
    }
}

/// Session-creating requests, by client IP: a session is what the other limit keys on, so
/// minting them must not be keyed by one.
#[derive(Clone, Default)]
pub struct SessionCreation;

impl KeyExtractor for SessionCreation {
    type Key = ClientKey;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<ClientKey, Self::KeyExtractionError> {
        if req.method() != Method::POST || !SESSION_CREATION_PATHS.contains(&req.path()) {
            return Ok(ClientKey::Exempt);
        }
        Ok(match caller_key(req) {
            ClientKey::Exempt => ClientKey::Exempt,
            _ => {
                let ext = req.extensions();
                ClientKey::Ip(ext.get::<Caller>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.ip))
            }
        })
    }

    fn exceed_rate_limit_response(&self, negative: &NotUntil<QuantaInstant>, _: HttpResponseBuilder) -> HttpResponse {
        too_many(negative)
    }

    fn whitelisted_keys(&self) -> Vec<ClientKey> {
        vec![ClientKey::Exempt]
    }
}

/// One limiter's shared state; built (but not mounted) when off, because the middleware slot
/// is fixed at app build time.
#[derive(Clone)]
pub struct Limiter<K: KeyExtractor<Key = ClientKey>> {
    pub enabled: bool,
    pub config: GovernorConfig<K, NoOpMiddleware<QuantaInstant>>,
}

impl<K: KeyExtractor<Key = ClientKey>> Limiter<K> {
    /// Keys currently held (each client seen recently enough to still owe something).
    pub fn keys(&self) -> usize {
        self.config.limiter().len()
    }
}

#[derive(Clone)]
pub struct Limiters {
    pub requests: Limiter<ByCaller>,
    pub sessions: Limiter<SessionCreation>,
}

/// `max` per `window`, refilled evenly, with a full window's burst allowed.
fn build<K: KeyExtractor<Key = ClientKey>>(max: u64, window: Duration, key: K) -> Result<Limiter<K>, String> {
    let burst = u32::try_from(max.max(1)).unwrap_or(u32::MAX);
    let config = GovernorConfigBuilder::default()
        .period((window / burst).max(Duration::from_nanos(1)))
        .burst_size(burst)
        .key_extractor(key)
        .finish()
        .ok_or_else(|| "invalid rate limit settings".to_string())?;
    Ok(Limiter { enabled: max > 0, config })
}

pub fn limiters(config: &Config) -> Result<Limiters, String> {
    let window = Duration::from_secs(config.rate_limit_window_secs.max(1));
    Ok(Limiters {
        requests: build(config.rate_limit_max, window, ByCaller)?,
        sessions: build(config.session_rate_limit, Duration::from_secs(60), SessionCreation)?,
    })
}

impl Limiters {
    /// Drops the keys of clients back to a full burst (governor's `retain_recent`): forgetting
    /// them changes no answer, and the maps then hold only clients seen within about a window.
    pub fn prune(&self) {
        prune_all(&[self.requests.config.limiter(), self.sessions.config.limiter()]);
    }

    /// [`Limiters::prune`] every [`PRUNE_INTERVAL`], until the limiters are dropped.
    pub fn prune_periodically(&self) {
        let maps = [Arc::downgrade(&self.requests.config.limiter()), Arc::downgrade(&self.sessions.config.limiter())];
        actix::spawn(async move {
            let mut tick = actix::clock::interval(PRUNE_INTERVAL);
            loop {
                tick.tick().await;
                let alive: Vec<_> = maps.iter().filter_map(std::sync::Weak::upgrade).collect();
                if alive.is_empty() {
                    break;
                }
                prune_all(&alive);
            }
        });
    }
}

type SharedLimiter = Arc<
    actix_governor::governor::RateLimiter<
        ClientKey,
        actix_governor::governor::state::keyed::DefaultKeyedStateStore<ClientKey>,
        DefaultClock,
        NoOpMiddleware<QuantaInstant>,
    >,
>;

fn prune_all(maps: &[SharedLimiter]) {
    for map in maps {
        map.retain_recent();
        map.shrink_to_fit();
    }
}

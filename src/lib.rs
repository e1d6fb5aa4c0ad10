//! The Plaza server: configuration, HTTP routes and middleware over the subsystems in
//! `plaza-actors`. `main.rs` and every test build the app the same way:
//!
//! ```ignore
//! let state = plaza::build_state(config)?;
//! HttpServer::new(move || App::new().configure(plaza::configure(state.clone())))
//! ```

pub mod codegen;
pub mod config;
pub mod error;
pub mod extract;
pub mod http;
pub mod live;
pub mod mailer;
pub mod metrics;
pub mod middleware;
pub mod webhook;
pub mod ws;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_governor::Governor;
use actix_web::middleware::{from_fn, Condition, DefaultHeaders};
use actix_web::web;
use plaza_actors::model::policy::{AuthContext, DefaultPolicy};
use plaza_actors::shards::SimulationKinds;
use plaza_actors::store::{Durability, StoreOptions};
use plaza_actors::{AppManifest, Subsystems};

use crate::config::Config;
use crate::error::ApiError;

/// Everything a request handler can reach. Subsystem state lives in the actors behind
/// `plaza`; this only holds their addresses, settings and counters.
pub struct AppState {
    pub config: Config,
    pub plaza: Subsystems,
    pub metrics: metrics::Metrics,
    /// Delivers magic sign-in codes (log, webhook, or a test's capture).
    pub mailer: Arc<dyn mailer::CodeSender>,
    pub started: Instant,
    /// Set on SIGTERM: `/ready` answers 503 while in-flight work finishes.
    pub draining: AtomicBool,
    /// Where uploaded files are stored (`PLAZA_FILES_DIR`, else `<db>.files`).
    pub files_dir: std::path::PathBuf,
    /// The request and session-creation limiters (tests read how many keys they hold).
    pub rate_limit: middleware::rate_limit::Limiters,
    /// Account routes' own limiter and counters.
    pub accounts: http::accounts::AccountsState,
    /// Keeps the `--in-memory` scratch database alive exactly as long as the app.
    _scratch: Option<tempfile::TempDir>,
}

impl AppState {
    pub fn entity(&self, name: &str) -> Result<&plaza_actors::model::manifest::EntityDef, ApiError> {
        Ok(self.plaza.reader.entity(name)?)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Starts a graceful stop: `/ready` turns 503, new streams are refused, and every open
    /// WebSocket and SSE stream is told to reconnect (WS close code 1012) so clients move to
    /// another instance.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
        self.plaza.streams.do_send(plaza_actors::streams::Drain);
        self.plaza.jobs.do_send(plaza_actors::jobs::queue::Drain);
    }

    /// Saves the state of every room that persists (the last step of a drain); answers how
    /// many rooms saved.
    pub async fn persist_rooms(&self) -> usize {
        self.plaza.rooms.registry.send(plaza_actors::rooms::PersistAll).await.unwrap_or(0)
    }

    /// Stops every shard, persisting ones saving their last snapshot through the Writer. Call
    /// it before [`begin_drain`](Self::begin_drain): the shards stop ticking first, so players
    /// leaving with their closing sockets are still in what is saved. The SIGTERM sequence
    /// awaits the returned future before the Writer goes away.
    pub fn stop_shards(&self) -> impl std::future::Future<Output = ()> + 'static {
        self.plaza.shards.stop_all(true)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("manifest {path}: {source}")]
    Manifest { path: String, source: plaza_actors::PlazaError },
    #[error("database {path}: {source}")]
    Store { path: String, source: plaza_actors::PlazaError },
    #[error("{0}")]
    Other(String),
}

/// Loads the manifest named by the config (a missing file is an empty app).
pub fn load_manifest(config: &Config) -> Result<AppManifest, StartError> {
    let path = config.manifest.display().to_string();
    match AppManifest::load(&config.manifest) {
        Ok(Some(m)) => {
            tracing::info!(manifest = %path, entities = m.entities.len(), "loaded manifest");
            Ok(m)
        }
        Ok(None) => {
            tracing::info!(manifest = %path, "no manifest found; starting with an empty app");
            Ok(AppManifest::default())
        }
        Err(source) => Err(StartError::Manifest { path, source }),
    }
}

/// Builds the app from its config: manifest, database, actors. Runs inside an actix System.
pub fn build_state(config: Config) -> Result<web::Data<AppState>, StartError> {
    let manifest = load_manifest(&config)?;
    build_state_with(config, manifest)
}

/// As [`build_state`], with a manifest given directly (tests, `plaza bench`).
pub fn build_state_with(config: Config, manifest: AppManifest) -> Result<web::Data<AppState>, StartError> {
    let mailer = mailer::from_config(config.magic_webhook.as_deref());
    build_state_full(config, manifest, mailer)
}

/// As [`build_state_with`], with the magic-code sender given (tests capture codes with it).
pub fn build_state_full(
    config: Config,
    manifest: AppManifest,
    mailer: Arc<dyn mailer::CodeSender>,
) -> Result<web::Data<AppState>, StartError> {
    build_state_extras(config, manifest, Extras { mailer: Some(mailer), ..Extras::default() })
}

/// As [`build_state_full`], with the simulation kinds shards may run: an app embedding Plaza
/// registers its own next to the built-in `arena` (`SimulationKinds::default().register(..)`).
pub fn build_state_with_simulations(
    config: Config,
    manifest: AppManifest,
    mailer: Arc<dyn mailer::CodeSender>,
    simulations: SimulationKinds,
) -> Result<web::Data<AppState>, StartError> {
    build_state_extras(config, manifest, Extras { mailer: Some(mailer), simulations: Some(simulations), ..Extras::default() })
}

/// What an embedding app or a test can plug in beyond the config.
#[derive(Default)]
pub struct Extras {
    /// Delivers magic sign-in codes; `None`: from the config (log or webhook).
    pub mailer: Option<Arc<dyn mailer::CodeSender>>,
    /// Wall-clock time for cache TTLs, jobs and cron; `None`: the system clock.
    pub clock: Option<plaza_actors::clock::SharedClock>,
    /// Job handlers beyond the built-in ones (a handler of the same name replaces a built-in).
    pub jobs: Option<plaza_actors::jobs::Registry>,
    /// Simulation kinds for shards; `None`: the built-in ones.
    pub simulations: Option<SimulationKinds>,
}

/// As [`build_state_with`], with extras plugged in.
pub fn build_state_extras(config: Config, manifest: AppManifest, extras: Extras) -> Result<web::Data<AppState>, StartError> {
    let mailer = extras.mailer.clone().unwrap_or_else(|| mailer::from_config(config.magic_webhook.as_deref()));
    plaza_actors::model::check(&manifest).map_err(|source| StartError::Manifest { path: "(given)".into(), source })?;
    config.validate().map_err(StartError::Other)?;
    let (path, scratch) = if config.in_memory {
        let dir = tempfile::tempdir().map_err(|e| StartError::Other(format!("cannot create scratch dir: {e}")))?;
        (dir.path().join("plaza.db"), Some(dir))
    } else {
        (config.db.clone(), None)
    };
    let options = StoreOptions {
        path: path.clone(),
        changelog_retain: config.changelog_retain,
        op_retain: config.op_retain,
        durability: if config.durability == "full" { Durability::Full } else { Durability::Normal },
        read_pool_size: config.read_pool,
    };
    let metrics = metrics::Metrics::new().map_err(|e| StartError::Other(e.to_string()))?;
    let settings = plaza_actors::Settings {
        default_policy: if config.default_policy == "deny" { DefaultPolicy::Deny } else { DefaultPolicy::Allow },
        session_ttl: Duration::from_secs(config.session_ttl_secs),
        read_threads: config.read_pool as usize,
        streams_per_ip: config.ws_max_per_ip,
        rooms: config.room_settings(),
        simulations: extras.simulations.unwrap_or_default(),
        shard_limits: config.shard_limits(),
        shard_observer: metrics.shards.clone(),
        clock: extras.clock.clone().unwrap_or_else(plaza_actors::clock::system),
        cache: plaza_actors::cache::Limits { max_entries: config.cache_max_entries, max_bytes: config.cache_max_bytes },
        jobs: plaza_actors::jobs::JobSettings {
            workers: config.job_workers,
            backoff_ms: config.job_backoff_ms,
            registry: job_registry(&config, extras.jobs),
            observer: Arc::new(metrics.jobs.clone()),
        },
        accounts: config.accounts.settings(),
    };
    let plaza = plaza_actors::start(options, manifest, settings)
        .map_err(|source| StartError::Store { path: path.display().to_string(), source })?;
    metrics.watch_rooms(plaza.rooms.stats.clone()).map_err(|e| StartError::Other(e.to_string()))?;
    let rate_limit = middleware::rate_limit::limiters(&config).map_err(StartError::Other)?;
    rate_limit.prune_periodically();
    let files_dir = config.files_dir.clone().unwrap_or_else(|| {
        let mut dir = path.clone().into_os_string();
        dir.push(".files");
        dir.into()
    });
    let accounts = http::accounts::AccountsState::new(&config, &metrics.registry).map_err(StartError::Other)?;
    Ok(web::Data::new(AppState {
        config,
        plaza,
        metrics,
        mailer,
        started: Instant::now(),
        draining: AtomicBool::new(false),
        files_dir,
        rate_limit,
        accounts,
        _scratch: scratch,
    }))
}

/// The built-in handlers (`changelog_compact`, `sessions_cleanup`, `webhook`) and the app's own.
fn job_registry(config: &Config, extra: Option<plaza_actors::jobs::Registry>) -> plaza_actors::jobs::Registry {
    let mut registry = plaza_actors::jobs::Registry::with_builtins();
    registry.register("webhook", webhook::Webhook::new(config.webhook_allow.clone()));
    if let Some(extra) = extra {
        registry.extend(extra);
    }
    registry
}

fn cors(config: &Config) -> Cors {
    if config.dev_mode {
        return Cors::permissive();
    }
    config
        .cors_origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin))
        .allow_any_method()
        .allow_any_header()
        .supports_credentials()
        .max_age(3600)
}

/// Sent when the request had no Origin to echo, so every response carries the header: `*` in
/// dev mode, the one configured origin otherwise.
fn default_allow_origin(config: &Config) -> Option<String> {
    match (config.dev_mode, config.cors_origins.as_slice()) {
        (true, _) => Some("*".into()),
        (false, [only]) => Some(only.clone()),
        _ => None,
    }
}

/// Registers every route and middleware of the app on `cfg`.
pub fn configure(state: web::Data<AppState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let mut headers = DefaultHeaders::new()
            .add(("X-Content-Type-Options", "nosniff"))
            .add(("X-Frame-Options", "DENY"));
        if let Some(origin) = default_allow_origin(&state.config) {
            headers = headers.add(("Access-Control-Allow-Origin", origin));
        }
        let (requests, sessions) = (&state.rate_limit.requests, &state.rate_limit.sessions);
        // `wrap` order: the last one runs first.
        let scope = web::scope("")
            .wrap(from_fn(middleware::csrf::check))
            .wrap(Condition::new(sessions.enabled, Governor::new(&sessions.config)))
            .wrap(Condition::new(requests.enabled, Governor::new(&requests.config)))
            .wrap(from_fn(middleware::caller::identify))
            .wrap(cors(&state.config))
            .wrap(headers)
            .wrap(from_fn(middleware::request_log::record))
            .configure(http::routes)
            .configure(ws::routes)
            .default_service(web::to(http::route_not_found));
        cfg.app_data(state.clone()).service(scope);
    }
}


impl AppState {
    /// Runs a read on the read threads (never on an actor thread).
    pub async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&plaza_actors::store::Reader) -> R + Send + 'static,
    ) -> Result<R, ApiError> {
        Ok(self.plaza.readers.send(plaza_actors::store::reader::Read::new(f)).await?)
    }

    /// Commits `ops` all-or-nothing through the Writer, each checked against the policies for
    /// `auth`; answers after the commit.
    pub async fn write(
        &self,
        auth: &AuthContext,
        ops: Vec<plaza_actors::store::writer::WriteOp>,
    ) -> Result<Vec<std::sync::Arc<plaza_actors::model::change::Change>>, ApiError> {
        let write = plaza_actors::store::writer::Write { auth: auth.clone(), ops };
        Ok(self.plaza.writer.send(write).await??)
    }
}

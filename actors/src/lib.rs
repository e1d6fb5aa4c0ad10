//! Plaza's subsystems, each owned by an actor. Nothing in this crate knows about HTTP.

pub mod cache;
pub mod accounts;
pub mod changelog;
pub mod clock;
pub mod error;
pub mod files;
pub mod jobs;
pub mod model;
pub mod rooms;
pub mod pubsub;
pub mod sessions;
pub mod shards;
pub mod store;
pub mod streams;

use std::sync::Arc;

use actix::prelude::*;

pub use error::{PlazaError, Result};
pub use model::manifest::AppManifest;

use changelog::ChangeLog;
use sessions::SessionStore;
use store::writer::{SqliteWriter, Writer};
use store::{Reader, StoreOptions};

/// Handles to every running subsystem; cheap to clone into request handlers.
#[derive(Clone)]
pub struct Subsystems {
    pub manifest: Arc<AppManifest>,
    pub policies: Arc<model::policy::Policies>,
    pub reader: Reader,
    pub writer: Addr<Writer>,
    pub changelog: Addr<ChangeLog>,
    pub sessions: Addr<SessionStore>,
    pub streams: Addr<streams::Streams>,
    pub readers: Addr<store::reader::ReadWorker>,
    pub rooms: rooms::Rooms,
    pub shards: shards::ShardRegistry,
    pub cache: Addr<cache::Cache>,
    pub pubsub: Addr<pubsub::PubSub>,
    pub jobs: Addr<jobs::JobQueue>,
    pub scheduler: Addr<jobs::Scheduler>,
    pub accounts: Addr<accounts::Accounts>,
}

/// Settings of the subsystems beyond storage.
#[derive(Clone)]
pub struct Settings {
    pub default_policy: model::policy::DefaultPolicy,
    pub session_ttl: std::time::Duration,
    /// Threads that run reads.
    pub read_threads: usize,
    /// Open WebSocket + SSE streams allowed per client IP.
    pub streams_per_ip: usize,
    pub rooms: rooms::RoomSettings,
    /// Simulation kinds shards may run (built-ins plus the embedding app's own).
    pub simulations: shards::SimulationKinds,
    pub shard_limits: shards::ShardLimits,
    /// Receives the shards' tick, input and crash figures (metrics).
    pub shard_observer: Arc<dyn shards::ShardObserver>,
    /// Wall-clock time for TTLs, `run_at` and cron (tests set it).
    pub clock: clock::SharedClock,
    pub cache: cache::Limits,
    pub jobs: jobs::JobSettings,
    pub accounts: accounts::AccountSettings,
}

/// Opens and migrates the store, then starts the actors. Must run inside an actix `System`.
pub fn start(options: StoreOptions, manifest: AppManifest, settings: Settings) -> Result<Subsystems> {
    let policies = Arc::new(model::policy::Policies::from_manifest(&manifest, settings.default_policy)?);
    let manifest = Arc::new(manifest);
    let opened = store::open(&options, manifest.clone(), policies.clone())?;
    let options_copy = options.clone();
    // Fan-out gets a thread of its own: a burst of deliveries never delays acknowledging writes,
    // pulls, or session lookups on the system arbiter.
    let fanout_policies = policies.clone();
    let fanout = changelog::Fanout::start_in_arbiter(&Arbiter::new().handle(), move |_| changelog::Fanout::new(fanout_policies));
    let changelog = ChangeLog::new(opened.bounds, changelog::DEFAULT_TAIL, fanout).start();
    let (factory_manifest, factory_policies, version) = (manifest.clone(), policies.clone(), opened.reader.data_version());
    let worker = SyncArbiter::start(1, move || {
        SqliteWriter::open(&options, factory_manifest.clone(), factory_policies.clone(), version.clone())
    });
    let writer = Writer::new(worker, changelog.clone()).start();
    let streams = streams::Streams::new(settings.streams_per_ip).start();
    accounts::schema::migrate(&opened.setup)?;
    let accounts = accounts::Accounts::load(&opened.setup, writer.clone(), settings.accounts.clone())?.start();
    let sessions = SessionStore::load(&opened.setup, writer.clone(), settings.session_ttl, streams.clone().recipient())?.start();
    let read_threads = settings.read_threads.max(1);
    let worker_reader = opened.reader.clone();
    let readers = SyncArbiter::start(read_threads, move || store::reader::ReadWorker::new(worker_reader.clone()));
    let cache = cache::Cache::new(settings.cache, settings.clock.clone()).start();
    // Pub/sub fan-out, like the change log's, gets its own thread.
    let topics = Arc::new(model::topics::TopicRules::from_manifest(&manifest)?);
    let pubsub = pubsub::PubSub::start_in_arbiter(&Arbiter::new().handle(), move |_| pubsub::PubSub::new(topics));
    let (jobs, scheduler) = start_jobs(&opened.setup, &options_copy, &manifest, writer.clone(), sessions.clone(), &settings)?;
    let rooms = start_rooms(&manifest, settings.rooms, rooms::RoomStore { writer: writer.clone(), readers: readers.clone() })?;
    shards::check_manifest(&manifest, &settings.simulations, settings.shard_limits.max_tick_hz)?;
    let shards = shards::ShardRegistry::new(
        settings.simulations,
        settings.shard_limits,
        settings.shard_observer,
        writer.clone(),
        readers.clone(),
    );
    shards.start_manifest(&manifest)?;
    Ok(Subsystems {
        manifest,
        policies,
        reader: opened.reader,
        writer,
        changelog,
        sessions,
        streams,
        readers,
        rooms,
        shards,
        cache,
        pubsub,
        jobs,
        scheduler,
        accounts,
    })
}

fn start_rooms(manifest: &AppManifest, settings: rooms::RoomSettings, store: rooms::RoomStore) -> Result<rooms::Rooms> {
    let rules = Arc::new(model::policy::RoomRules::from_manifest(manifest)?);
    let settings = Arc::new(settings);
    let stats = Arc::new(rooms::RoomStats::default());
    let registry = rooms::RoomRegistry::new(rules.clone(), settings.clone(), stats.clone(), Some(store)).start();
    Ok(rooms::Rooms { registry, rules, settings, stats })
}

/// The job worker pool, the queue (with the jobs left unfinished last time) and the Scheduler.
fn start_jobs(
    setup: &rusqlite::Connection,
    options: &StoreOptions,
    manifest: &AppManifest,
    writer: Addr<Writer>,
    sessions: Addr<SessionStore>,
    settings: &Settings,
) -> Result<(Addr<jobs::JobQueue>, Addr<jobs::Scheduler>)> {
    let services = Arc::new(jobs::Services {
        writer: writer.clone(),
        sessions,
        changelog_retain: options.changelog_retain,
        op_retain: options.op_retain,
    });
    let registry = settings.jobs.registry.clone();
    let pool = SyncArbiter::start(settings.jobs.workers.max(1), move || jobs::JobWorker::new(registry.clone(), services.clone()));
    let unfinished = jobs::load_unfinished(setup)?;
    let queue = jobs::JobQueue::new(unfinished, pool, writer.clone(), settings.clock.clone(), settings.jobs.clone()).start();
    let scheduler = jobs::Scheduler::load(setup, &manifest.jobs, queue.clone(), writer, settings.clock.clone())?.start();
    Ok((queue, scheduler))
}

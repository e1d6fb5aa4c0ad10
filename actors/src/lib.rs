//! Plaza's subsystems, each owned by an actor. Nothing in this crate knows about HTTP.

pub mod accounts;
pub mod changelog;
pub mod error;
pub mod model;
pub mod sessions;
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
    pub accounts: Addr<accounts::Accounts>,
}

/// Settings of the subsystems beyond storage.
#[derive(Debug, Clone)]
pub struct Settings {
    pub default_policy: model::policy::DefaultPolicy,
    pub session_ttl: std::time::Duration,
    /// Threads that run reads.
    pub read_threads: usize,
    /// Open WebSocket + SSE streams allowed per client IP.
    pub streams_per_ip: usize,
    pub accounts: accounts::AccountSettings,
}

/// Opens and migrates the store, then starts the actors. Must run inside an actix `System`.
pub fn start(options: StoreOptions, manifest: AppManifest, settings: Settings) -> Result<Subsystems> {
    let policies = Arc::new(model::policy::Policies::from_manifest(&manifest, settings.default_policy)?);
    let manifest = Arc::new(manifest);
    let opened = store::open(&options, manifest.clone(), policies.clone())?;
    // Fan-out gets a thread of its own: a burst of deliveries never delays acknowledging writes,
    // pulls, or session lookups on the system arbiter.
    let fanout_policies = policies.clone();
    let fanout = changelog::Fanout::start_in_arbiter(&Arbiter::new().handle(), move |_| changelog::Fanout::new(fanout_policies));
    let changelog = ChangeLog::new(opened.bounds, changelog::DEFAULT_TAIL, fanout).start();
    let (factory_manifest, factory_policies) = (manifest.clone(), policies.clone());
    let worker =
        SyncArbiter::start(1, move || SqliteWriter::open(&options, factory_manifest.clone(), factory_policies.clone()));
    let writer = Writer::new(worker, changelog.clone()).start();
    let streams = streams::Streams::new(settings.streams_per_ip).start();
    accounts::schema::migrate(&opened.setup)?;
    let accounts = accounts::Accounts::load(&opened.setup, writer.clone(), settings.accounts.clone())?.start();
    let sessions = SessionStore::load(&opened.setup, writer.clone(), settings.session_ttl, streams.clone().recipient())?.start();
    let read_threads = settings.read_threads.max(1);
    let worker_reader = opened.reader.clone();
    let readers = SyncArbiter::start(read_threads, move || store::reader::ReadWorker::new(worker_reader.clone()));
    Ok(Subsystems { manifest, policies, reader: opened.reader, writer, changelog, sessions, streams, readers, accounts })
}

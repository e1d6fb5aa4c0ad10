//! Plaza's subsystems, each owned by an actor. Nothing in this crate knows about HTTP.

pub mod changelog;
pub mod error;
pub mod manifest;
pub mod query;
pub mod rows;
pub mod store;

use std::sync::Arc;

use actix::prelude::*;

pub use error::{PlazaError, Result};
pub use manifest::AppManifest;

use changelog::ChangeLog;
use store::writer::{SqliteWriter, Writer};
use store::{Reader, StoreOptions};

/// Handles to every running subsystem; cheap to clone into request handlers.
#[derive(Clone)]
pub struct Subsystems {
    pub manifest: Arc<AppManifest>,
    pub reader: Reader,
    pub writer: Addr<Writer>,
    pub changelog: Addr<ChangeLog>,
}

/// Opens and migrates the store, then starts the actors. Must run inside an actix `System`.
pub fn start(options: StoreOptions, manifest: AppManifest) -> Result<Subsystems> {
    let manifest = Arc::new(manifest);
    let opened = store::open(&options, manifest.clone())?;
    let changelog = ChangeLog::new(opened.bounds, changelog::DEFAULT_TAIL).start();
    let factory_manifest = manifest.clone();
    let worker = SyncArbiter::start(1, move || SqliteWriter::open(&options, factory_manifest.clone()));
    let writer = Writer::new(worker, changelog.clone()).start();
    Ok(Subsystems { manifest, reader: opened.reader, writer, changelog })
}

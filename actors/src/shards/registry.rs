//! `ShardRegistry`: shard name → `Addr<Shard>`, and how shards are started and stopped. It
//! holds addresses only, never a shard's state.
//!
//! Placement: shards run on a pool of arbiters of their own (`PLAZA_SHARD_THREADS`, default one
//! per core), placed round-robin as they start, so a heavy simulation never stalls the
//! arbiters that serve sockets and HTTP; a shard stays on its arbiter for its life.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use serde_json::Value;

use super::clock::TickClock;
use super::shard::{Boot, Info, Input, InputRefused, Shard, ShardInfo, Stop};
use super::{Loader, ShardLimits, ShardObserver, ShardSpec, SimulationKinds, DEFAULT_TICK_HZ};
use crate::error::{PlazaError, Result};
use crate::model::manifest::{is_shard_name, AppManifest, MAX_SHARD_NAME_LEN};
use crate::store::reader::ReadWorker;
use crate::store::writer::Writer;

#[derive(Clone)]
pub struct ShardRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Arc<DashMap<String, Addr<Shard>>>,
    /// Each shard arbiter with the clock thread that wakes its shards.
    arbiters: Vec<(ArbiterHandle, TickClock)>,
    next: AtomicUsize,
    kinds: SimulationKinds,
    limits: ShardLimits,
    observer: Arc<dyn ShardObserver>,
    writer: Addr<Writer>,
    readers: Addr<ReadWorker>,
}

/// Counts the bytes of a value's JSON without building it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ShardRegistry {
    /// Starts the shard arbiters. Must run inside an actix `System`.
    pub fn new(
        kinds: SimulationKinds,
        limits: ShardLimits,
        observer: Arc<dyn ShardObserver>,
        writer: Addr<Writer>,
        readers: Addr<ReadWorker>,
    ) -> ShardRegistry {
        let threads = match limits.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let arbiters = (0..threads)
            .map(|i| {
                let arbiter = Arbiter::new().handle();
                let clock = TickClock::start(format!("shard-clock-{i}"), limits.priority).expect("the OS refused to start a shard clock thread");
                let adopting = clock.clone();
                arbiter.spawn_fn(move || adopting.adopt_arbiter_thread());
                (arbiter, clock)
            })
            .collect();
        let inner = Inner { shards: Arc::new(DashMap::new()), arbiters, next: AtomicUsize::new(0), kinds, limits, observer, writer, readers };
        ShardRegistry { inner: Arc::new(inner) }
    }

    pub fn kinds(&self) -> &SimulationKinds {
        &self.inner.kinds
    }

    pub fn limits(&self) -> &ShardLimits {
        &self.inner.limits
    }

    pub fn get(&self, name: &str) -> Option<Addr<Shard>> {
        self.inner.shards.get(name).map(|a| a.clone())
    }

    /// The running shard `name`, or 404 `NOT_FOUND`.
    pub fn find(&self, name: &str) -> Result<Addr<Shard>> {
        self.get(name).ok_or_else(|| PlazaError::NotFound(format!("no shard named '{name}' is running")))
    }

    pub fn len(&self) -> usize {
        self.inner.shards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.shards.is_empty()
    }

    /// A spec from client or manifest input, checked against the kinds and limits.
    pub fn spec(&self, name: &str, sim: &str, tick_hz: Option<u32>, config: Option<Value>, persist: bool) -> Result<ShardSpec> {
        if !is_shard_name(name) {
            return Err(PlazaError::Validation(format!("a shard name is 1 to {MAX_SHARD_NAME_LEN} characters of A-Z a-z 0-9 _ . : -")));
        }
        if self.inner.kinds.get(sim).is_none() {
            let known = self.inner.kinds.names().collect::<Vec<_>>().join(", ");
            return Err(PlazaError::Validation(format!("unknown sim '{sim}' (known: {known})")));
        }
        let max = self.inner.limits.max_tick_hz;
        let tick_hz = tick_hz.unwrap_or(DEFAULT_TICK_HZ.min(max));
        if tick_hz == 0 || tick_hz > max {
            return Err(PlazaError::Validation(format!("tick_hz must be between 1 and {max}")));
        }
        Ok(ShardSpec { name: name.to_string(), sim: sim.to_string(), tick_hz, config: config.unwrap_or(Value::Null), persist })
    }

    /// Registers the shard and starts it on the next shard arbiter; the returned request
    /// answers once the simulation is built (a persisting shard first loads its snapshot on
    /// the read threads). Messages sent meanwhile wait for it in the shard's mailbox.
    fn launch(&self, spec: ShardSpec) -> Result<Request<Shard, Boot>> {
        let inner = &self.inner;
        let kind = inner.kinds.get(&spec.sim).cloned().ok_or_else(|| PlazaError::Validation(format!("unknown sim '{}'", spec.sim)))?;
        let max = inner.limits.max_shards;
        if inner.shards.len() >= max {
            return Err(PlazaError::LimitReached { code: "TOO_MANY_SHARDS", message: format!("at most {max} shards run at once") });
        }
        match inner.shards.entry(spec.name.clone()) {
            Entry::Occupied(_) => Err(PlazaError::Conflict(format!("shard '{}' is already running", spec.name))),
            Entry::Vacant(slot) => {
                let (arbiter, clock) = &inner.arbiters[inner.next.fetch_add(1, Ordering::Relaxed) % inner.arbiters.len()];
                let clock = clock.clone();
                let load = spec.persist.then(|| (inner.readers.clone(), spec.name.clone(), spec.sim.clone()));
                let (limits, observer, names, writer) =
                    (inner.limits.clone(), inner.observer.clone(), inner.shards.clone(), inner.writer.clone());
                let addr = Shard::start_in_arbiter(arbiter, move |_| Shard::new(spec, limits, observer, names, writer, clock));
                let booted = addr.send(Boot { kind, load: load.map(|(readers, name, sim)| Loader { readers, name, sim }) });
                slot.insert(addr);
                Ok(booted)
            }
        }
    }

    /// Starts a shard; answers once it runs (400 for a config its simulation refuses).
    pub async fn start(&self, spec: ShardSpec) -> Result<()> {
        let name = spec.name.clone();
        let booted = self.launch(spec)?.await;
        let outcome = booted.map_err(PlazaError::from).and_then(|r| r);
        if outcome.is_err() {
            self.inner.shards.remove(&name);
        }
        outcome
    }

    /// Starts the manifest's shards. Their names are taken at once (so they are found right
    /// after start); a shard whose simulation refuses its config is logged and not started.
    pub fn start_manifest(&self, manifest: &AppManifest) -> Result<()> {
        for def in &manifest.shards {
            let spec = self.spec(&def.name, &def.sim, def.tick_hz, def.config.clone(), def.persist)?;
            let booted = self.launch(spec)?;
            let (registry, name) = (self.clone(), def.name.clone());
            actix::spawn(async move {
                if let Err(e) = booted.await.map_err(PlazaError::from).and_then(|r| r) {
                    tracing::error!(shard = %name, error = %e, "manifest shard did not start");
                    registry.inner.shards.remove(&name);
                }
            });
        }
        Ok(())
    }

    /// Stops a shard (a persisting one saves its snapshot first when `save`).
    pub async fn stop(&self, name: &str, save: bool) -> Result<()> {
        let addr = self.find(name)?;
        let outcome = addr.send(Stop { save, draining: false }).await.map_err(PlazaError::from).and_then(|r| r);
        // Free the name now, so a new shard may take it as soon as this answers.
        self.inner.shards.remove_if(name, |_, a| *a == addr);
        outcome
    }

    /// Stops every shard for a drain, saving the persisting ones. `Stop` is in every shard's
    /// mailbox when this returns (before the sockets are told to go, so the players that leave
    /// with them are still in what is saved); the future answers once all have stopped.
    pub fn stop_all(&self, save: bool) -> impl std::future::Future<Output = ()> + 'static {
        let running: Vec<(String, Addr<Shard>)> = self.inner.shards.iter().map(|e| (e.key().clone(), e.value().clone())).collect();
        let stops: Vec<_> = running.iter().map(|(name, addr)| (name.clone(), addr.send(Stop { save, draining: true }))).collect();
        let registry = self.clone();
        async move {
            for (name, stop) in stops {
                if let Err(e) = stop.await.map_err(PlazaError::from).and_then(|r| r) {
                    tracing::error!(shard = %name, error = %e, "shard did not stop cleanly");
                }
            }
            for (name, addr) in &running {
                registry.inner.shards.remove_if(name, |_, a| a == addr);
            }
        }
    }

    /// Every running shard, by name.
    pub async fn list(&self) -> Vec<ShardInfo> {
        let addrs: Vec<Addr<Shard>> = self.inner.shards.iter().map(|e| e.value().clone()).collect();
        let asks: Vec<_> = addrs.iter().map(|a| a.send(Info)).collect();
        let mut infos = Vec::with_capacity(asks.len());
        for ask in asks {
            if let Ok(info) = ask.await {
                infos.push(info);
            }
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// Checks an input for `player` and the shard it goes to. Refused: too large (400
    /// `VALIDATION`), no such shard (404).
    fn input_to(&self, name: &str, input: &Value) -> Result<Addr<Shard>> {
        let max = self.inner.limits.input_max_bytes;
        let mut size = ByteCount(0);
        serde_json::to_writer(&mut size, input).map_err(|e| PlazaError::Validation(e.to_string()))?;
        if size.0 > max {
            return Err(PlazaError::Validation(format!("a shard input is limited to {max} bytes of JSON")));
        }
        self.find(name)
    }

    /// Queues `player`'s input for the shard's next tick; the request (already in the shard's
    /// mailbox, so inputs from one sender keep their order) answers that tick. Refused: too
    /// large (400 `VALIDATION`), over the player's rate (429), a full shard (409 `SHARD_FULL`).
    pub fn input(&self, name: &str, player: Arc<str>, input: Value) -> Result<Request<Shard, Input>> {
        Ok(self.input_to(name, &input)?.send(Input { player, input, refused: None }))
    }

    /// As [`input`](Self::input), without waiting: only a refusal is reported, to `refused`.
    pub fn input_nowait(&self, name: &str, player: Arc<str>, input: Value, refused: Recipient<InputRefused>) -> Result<()> {
        self.input_to(name, &input)?.do_send(Input { player, input, refused: Some(refused) });
        Ok(())
    }
}


//! Shards: authoritative server-side simulations (game loops) at a fixed tick.
//!
//! - [`simulation`]: the `Simulation` trait an app implements, and `SimulationKinds`, the kinds
//!   by name (built-in: [`arena`]).
//! - [`shard`]: one `Shard` actor per running shard. It owns the simulation's state, the input
//!   queue, its players and subscribers, and ticks on a fixed schedule. Messages: `Input`,
//!   `Subscribe`, `Unsubscribe`, `Info`, `Snapshot`, `Stop`. Each tick is published once, as
//!   serialised frames, on a watch channel every subscriber reads from: a slow subscriber only
//!   ever skips to the latest tick, and the shard never waits on anyone.
//! - [`clock`]: one tick clock thread per shard arbiter, waking each shard when its next tick
//!   is due (finer than tokio's millisecond timer); both run at a raised priority where allowed.
//! - [`registry`]: `ShardRegistry`, shard name → `Addr<Shard>`; starts shards round-robin on
//!   a small pool of arbiters of their own (never the ones serving sockets), loads persisted
//!   snapshots on the read threads, stops them all on drain.
//!
//! Simulation code runs behind `catch_unwind`: a panic stops only its shard.

pub mod arena;
pub mod clock;
pub mod registry;
pub mod shard;
pub mod simulation;

use std::time::Duration;

use actix::Addr;
use rusqlite::{Connection, OptionalExtension};
use serde_json::Value;

use crate::error::{PlazaError, Result};
use crate::model::manifest::AppManifest;
use crate::store::reader::{Read, ReadWorker};
pub use crate::model::manifest::{DEFAULT_TICK_HZ, MAX_TICK_HZ};
pub use registry::ShardRegistry;
pub use shard::{Ended, Published, Shard};
pub use simulation::{Instance, Simulation, SimulationKind, SimulationKinds};

/// The built-in simulation kinds; an embedding app registers its own beside them.
impl Default for SimulationKinds {
    fn default() -> Self {
        let mut kinds = SimulationKinds::empty();
        kinds.register("arena", arena::Arena);
        kinds
    }
}

/// Shards running in one process.
pub const DEFAULT_MAX_SHARDS: usize = 1_000;
/// Players (who subscribed or sent input) in one shard.
pub const DEFAULT_MAX_PLAYERS: usize = 100;
/// Live subscribers (WebSocket or SSE streams) of one shard.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 1_000;
/// Largest input, serialised, in bytes.
pub const DEFAULT_INPUT_MAX_BYTES: usize = 4 * 1024;
/// Inputs one player may send to one shard per second (burst: one second's worth).
pub const DEFAULT_INPUTS_PER_SEC: u32 = 60;
/// With deltas, a full snapshot every this many ticks.
pub const DEFAULT_KEYFRAME_EVERY: u64 = 20;
/// A player with no subscription that sent nothing for this long leaves.
pub const DEFAULT_PLAYER_IDLE: Duration = Duration::from_secs(60);

/// Limits of the shard subsystem; each has a named default and a `PLAZA_SHARD_*` setting.
#[derive(Debug, Clone)]
pub struct ShardLimits {
    pub max_shards: usize,
    pub max_players: usize,
    pub max_subscribers: usize,
    pub input_max_bytes: usize,
    pub inputs_per_sec: u32,
    pub max_tick_hz: u32,
    pub keyframe_every: u64,
    pub player_idle: Duration,
    /// Arbiters (threads) that run shards; 0 means one per core.
    pub threads: usize,
    /// How the shard threads are scheduled.
    pub priority: clock::ShardPriority,
}

impl Default for ShardLimits {
    fn default() -> Self {
        ShardLimits {
            max_shards: DEFAULT_MAX_SHARDS,
            max_players: DEFAULT_MAX_PLAYERS,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            input_max_bytes: DEFAULT_INPUT_MAX_BYTES,
            inputs_per_sec: DEFAULT_INPUTS_PER_SEC,
            max_tick_hz: MAX_TICK_HZ,
            keyframe_every: DEFAULT_KEYFRAME_EVERY,
            player_idle: DEFAULT_PLAYER_IDLE,
            threads: 0,
            priority: clock::ShardPriority::Realtime,
        }
    }
}

/// What shards report as they run; the server turns it into metrics. Called on the shards'
/// threads, so implementations must be cheap and lock-free (atomics, prometheus collectors).
pub trait ShardObserver: Send + Sync {
    fn started(&self, _name: &str) {}
    fn stopped(&self, _name: &str, _crashed: bool) {}
    /// One tick ran: how long it took, and how late it started against its schedule.
    fn tick(&self, _took: Duration, _lateness: Duration) {}
    /// A tick took longer than its budget (1 / tick_hz).
    fn overrun(&self) {}
    /// Ticks dropped from the schedule because the shard fell too far behind.
    fn skipped(&self, _ticks: u64) {}
    fn input(&self, _accepted: bool) {}
    /// Subscribers joined (+) or left (-).
    fn subscribers(&self, _change: i64) {}
}

/// Reports nothing.
pub struct NoObserver;
impl ShardObserver for NoObserver {}

/// What a shard runs: its name, its kind, its rate and its config.
#[derive(Debug, Clone)]
pub struct ShardSpec {
    pub name: String,
    pub sim: String,
    pub tick_hz: u32,
    pub config: Value,
    pub persist: bool,
}

/// Problems with the manifest's shards that only the kinds can tell: an unknown `sim`, or a
/// `tick_hz` above this server's limit. `plaza check` and start-up both use it.
pub fn check_manifest(manifest: &AppManifest, kinds: &SimulationKinds, max_tick_hz: u32) -> Result<()> {
    let mut problems = Vec::new();
    for s in &manifest.shards {
        if kinds.get(&s.sim).is_none() {
            let known = kinds.names().collect::<Vec<_>>().join(", ");
            problems.push(format!("shard '{}': unknown sim '{}' (known: {known})", s.name, s.sim));
        }
        if s.tick_hz.is_some_and(|hz| hz > max_tick_hz) {
            problems.push(format!("shard '{}': tick_hz {} is above PLAZA_SHARD_MAX_TICK_HZ ({max_tick_hz})", s.name, s.tick_hz.unwrap_or(0)));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PlazaError::Validation(problems.join("\n")))
    }
}

/// Saves a persisting shard's last snapshot (`_plaza_shards`), through the Writer.
pub const SAVE_SQL: &str = "INSERT INTO _plaza_shards (name, sim, tick, snapshot, saved_at) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT(name) DO UPDATE SET sim = excluded.sim, tick = excluded.tick, snapshot = excluded.snapshot, saved_at = excluded.saved_at";

/// A stored snapshot: the tick it was taken at and the state, if the shard was saved before
/// with the same sim. Runs on a read thread.
pub fn load_snapshot(conn: &Connection, name: &str, sim: &str) -> Result<Option<(u64, Value)>> {
    let row: Option<(String, i64, String)> = conn
        .query_row("SELECT sim, tick, snapshot FROM _plaza_shards WHERE name = ?", [name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((stored_sim, tick, text)) = row else { return Ok(None) };
    if stored_sim != sim {
        tracing::warn!(shard = %name, stored = %stored_sim, sim = %sim, "stored snapshot is of another sim; starting fresh");
        return Ok(None);
    }
    let state = serde_json::from_str(&text).map_err(|e| PlazaError::Internal(format!("stored snapshot of shard {name}: {e}")))?;
    Ok(Some((tick.max(0) as u64, state)))
}

/// Where a persisting shard's snapshot is read from (on the read threads).
pub struct Loader {
    pub readers: Addr<ReadWorker>,
    pub name: String,
    pub sim: String,
}

impl Loader {
    pub async fn load(self) -> Result<Option<(u64, Value)>> {
        let Loader { readers, name, sim } = self;
        readers.send(Read::new(move |r: &crate::store::Reader| r.with_conn(|c| load_snapshot(c, &name, &sim)))).await?
    }
}

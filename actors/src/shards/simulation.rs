//! The `Simulation` trait an app implements for a kind of shard, and the registry of kinds by
//! name. A simulation is typed (its own `State`); the Shard actor drives it through the
//! object-safe [`Instance`] that [`SimulationKinds::register`] wraps around it, so an app that
//! embeds Plaza as a library adds its own kinds without touching the actor.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

/// An authoritative simulation: Plaza owns its state and calls these on the shard's thread,
/// one at a time. Every call runs behind `catch_unwind`: a panic stops only that shard
/// (`SHARD_CRASHED`). `&self` is shared by every shard of the kind; per-shard data lives in
/// `State`.
pub trait Simulation: Send + Sync + 'static {
    type State: Send + 'static;

    /// A fresh state from the shard's `config` (the manifest's or the POST's, `null` when none).
    /// An error refuses to start the shard (400 `VALIDATION`).
    fn init(&self, config: &Value) -> Result<Self::State, String>;

    /// A state resumed from a snapshot this simulation produced (persisting shards, after a
    /// restart). The default cannot resume: the shard starts fresh from `init`, and says so.
    fn restore(&self, config: &Value, snapshot: &Value) -> Result<Self::State, String> {
        let _ = (config, snapshot);
        Err("this simulation cannot resume from a snapshot".into())
    }

    /// A player appears: on its first input, or when it subscribes.
    fn join(&self, state: &mut Self::State, player: &str) {
        let _ = (state, player);
    }

    /// The players in a state (after `restore`), so Plaza counts them and lets them leave when
    /// idle. The default: none.
    fn players(&self, state: &Self::State) -> Vec<String> {
        let _ = state;
        Vec::new()
    }

    /// A player leaves: its last subscription ended, or it went idle.
    fn leave(&self, state: &mut Self::State, player: &str) {
        let _ = (state, player);
    }

    /// Checks an input's shape before it is queued, so the sender hears about a bad one at
    /// once (400 `VALIDATION` / error frame) rather than never.
    fn check_input(&self, input: &Value) -> Result<(), String> {
        let _ = input;
        Ok(())
    }

    /// Applies one input at the start of a tick, in arrival order. An error drops the input
    /// (counted, logged at debug).
    fn apply_input(&self, state: &mut Self::State, player: &str, input: &Value) -> Result<(), String>;

    /// Advances the world by `dt` seconds (always `1 / tick_hz`: the schedule catches up
    /// instead of stretching `dt`).
    fn step(&self, state: &mut Self::State, dt: f64);

    /// The state as subscribers see it.
    fn snapshot(&self, state: &Self::State) -> Value;

    /// What changed between two consecutive snapshots, when cheaper to send than `next`
    /// itself. `None` (the default) sends full snapshots.
    fn delta(&self, prev: &Value, next: &Value) -> Option<Value> {
        let _ = (prev, next);
        None
    }
}

/// One running simulation with its state, as the Shard actor sees it.
pub trait Instance: Send {
    fn players(&self) -> Vec<String>;
    fn join(&mut self, player: &str);
    fn leave(&mut self, player: &str);
    fn check_input(&self, input: &Value) -> Result<(), String>;
    fn apply_input(&mut self, player: &str, input: &Value) -> Result<(), String>;
    fn step(&mut self, dt: f64);
    fn snapshot(&self) -> Value;
    fn delta(&self, prev: &Value, next: &Value) -> Option<Value>;
}

/// A kind of simulation: makes instances, fresh or resumed.
pub trait SimulationKind: Send + Sync {
    fn init(&self, config: &Value) -> Result<Box<dyn Instance>, String>;
    fn restore(&self, config: &Value, snapshot: &Value) -> Result<Box<dyn Instance>, String>;
}

struct Kind<S>(Arc<S>);

struct Running<S: Simulation> {
    sim: Arc<S>,
    state: S::State,
}

impl<S: Simulation> SimulationKind for Kind<S> {
    fn init(&self, config: &Value) -> Result<Box<dyn Instance>, String> {
        let state = self.0.init(config)?;
        Ok(Box::new(Running { sim: self.0.clone(), state }))
    }

    fn restore(&self, config: &Value, snapshot: &Value) -> Result<Box<dyn Instance>, String> {
        let state = self.0.restore(config, snapshot)?;
        Ok(Box::new(Running { sim: self.0.clone(), state }))
    }
}

impl<S: Simulation> Instance for Running<S> {
    fn players(&self) -> Vec<String> {
        self.sim.players(&self.state)
    }
    fn join(&mut self, player: &str) {
        self.sim.join(&mut self.state, player)
    }
    fn leave(&mut self, player: &str) {
        self.sim.leave(&mut self.state, player)
    }
    fn check_input(&self, input: &Value) -> Result<(), String> {
        self.sim.check_input(input)
    }
    fn apply_input(&mut self, player: &str, input: &Value) -> Result<(), String> {
        self.sim.apply_input(&mut self.state, player, input)
    }
    fn step(&mut self, dt: f64) {
        self.sim.step(&mut self.state, dt)
    }
    fn snapshot(&self) -> Value {
        self.sim.snapshot(&self.state)
    }
    fn delta(&self, prev: &Value, next: &Value) -> Option<Value> {
        self.sim.delta(prev, next)
    }
}

/// Simulation kinds by name. `SimulationKinds::default()` holds the built-in `arena`; an app
/// adds its own with [`register`](Self::register) before starting Plaza.
#[derive(Clone)]
pub struct SimulationKinds {
    kinds: BTreeMap<String, Arc<dyn SimulationKind>>,
}

impl SimulationKinds {
    /// No kinds at all.
    pub fn empty() -> Self {
        SimulationKinds { kinds: BTreeMap::new() }
    }

    /// Adds (or replaces) the kind `name`.
    pub fn register<S: Simulation>(&mut self, name: impl Into<String>, sim: S) -> &mut Self {
        self.register_kind(name, Arc::new(Kind(Arc::new(sim))))
    }

    /// Adds a kind that makes its own instances.
    pub fn register_kind(&mut self, name: impl Into<String>, kind: Arc<dyn SimulationKind>) -> &mut Self {
        self.kinds.insert(name.into(), kind);
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn SimulationKind>> {
        self.kinds.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }
}

impl fmt::Debug for SimulationKinds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

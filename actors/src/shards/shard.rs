//! The `Shard` actor: one running simulation. It owns the simulation's state, the inputs queued
//! for the next tick, its players and subscribers, and its schedule.
//!
//! Tick N is due at `epoch + N / tick_hz`: a late tick is followed at once by the next one, so
//! the rate holds on average instead of drifting (more than `MAX_CATCH_UP` behind, the schedule
//! restarts from now and the dropped ticks are counted). Each tick applies the queued inputs in
//! arrival order, steps the simulation by `1 / tick_hz`, and publishes the result once, already
//! serialised, on a `watch` channel. Subscribers hold receivers: each reads the latest value
//! when it is ready to write and catches up from the last tick it received (through the deltas,
//! or the last `CATCH_UP_SNAPSHOTS` full snapshots when the simulation has no deltas); one
//! further behind skips to the latest, and the shard never waits on anyone, however many
//! subscribe.
//!
//! Messages: `Boot` (from the registry), `Input`, `Subscribe`, `Unsubscribe`, `Info`,
//! `Snapshot`, `Stop`.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use dashmap::DashMap;
use rusqlite::types::Value as SqlValue;
use serde_json::Value;
use tokio::sync::watch;

use super::clock::{Tick, TickClock};
use super::simulation::Instance;
use super::{ShardLimits, ShardObserver, ShardSpec, SAVE_SQL};
use crate::error::PlazaError;
use crate::model::policy::AuthContext;
use crate::store::writer::{Write, WriteOp, Writer};

/// Most time a shard may fall behind its schedule before it stops catching up (the dropped
/// ticks are counted as skipped).
pub const MAX_CATCH_UP: Duration = Duration::from_secs(1);
/// Messages a shard's mailbox holds before senders wait: inputs from every player arrive here.
pub const MAILBOX_CAPACITY: usize = 65_536;
/// Overruns are logged at most this often per shard (all are counted).
pub const OVERRUN_LOG_EVERY: Duration = Duration::from_secs(5);
/// Full snapshots kept for subscribers that fell behind, when the simulation publishes no
/// deltas: a socket stalled for fewer ticks than this still receives every tick (at 30 Hz,
/// about half a second); one stalled longer skips to the latest.
pub const CATCH_UP_SNAPSHOTS: usize = 16;
/// And at most this many bytes of them, so a big state keeps fewer.
pub const CATCH_UP_BYTES: usize = 1 << 20;

/// Why a shard's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Stopped by an admin or the server's drain.
    Stopped,
    /// The simulation panicked.
    Crashed,
    /// The server is draining: streams are told to reconnect by the server, not by the shard.
    Draining,
}

/// One tick as published to subscribers, serialised once. With deltas, `key` is the last full
/// snapshot frame and `deltas` the delta frames of each tick since; without, `earlier` holds the
/// snapshot frames of the ticks just before `key`. Either way a subscriber that skipped ticks
/// can still catch up from what it last received.
#[derive(Debug)]
pub struct Published {
    pub shard: Arc<str>,
    pub tick: u64,
    pub key_tick: u64,
    pub key: Arc<str>,
    pub deltas: Vec<(u64, Arc<str>)>,
    /// Snapshot frames of consecutive ticks up to `key_tick - 1`, oldest first, at most
    /// `CATCH_UP_SNAPSHOTS`.
    pub earlier: Vec<(u64, Arc<str>)>,
    pub ended: Option<Ended>,
}

/// What a published frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Snapshot,
    Delta,
}

impl FrameKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameKind::Snapshot => "snapshot",
            FrameKind::Delta => "delta",
        }
    }
}

impl Published {
    /// The frames (tick, kind, text) that bring a subscriber that last received tick `last`
    /// (`None`: nothing yet) up to this tick: deltas after `last` when it has their base, else
    /// the earlier snapshots it missed (if still kept), the full snapshot and the deltas after it.
    pub fn frames_after(&self, last: Option<u64>) -> impl Iterator<Item = (u64, FrameKind, &Arc<str>)> {
        let (earlier_after, key, deltas_after) = match last {
            Some(l) if l >= self.key_tick => (u64::MAX, None, l),
            Some(l) => (l, Some((self.key_tick, FrameKind::Snapshot, &self.key)), self.key_tick),
            None => (u64::MAX, Some((self.key_tick, FrameKind::Snapshot, &self.key)), self.key_tick),
        };
        let earlier = self.earlier.iter().filter(move |(t, _)| *t > earlier_after).map(|(t, f)| (*t, FrameKind::Snapshot, f));
        let deltas = self.deltas.iter().filter(move |(t, _)| *t > deltas_after).map(|(t, f)| (*t, FrameKind::Delta, f));
        earlier.chain(key).chain(deltas)
    }

    /// The snapshots a keyframe at `tick` keeps from this one: its own key when it was the
    /// previous tick's full snapshot, after the ones it kept, newest first up to
    /// `CATCH_UP_SNAPSHOTS` and `CATCH_UP_BYTES`.
    fn earlier_for(&self, tick: u64) -> Vec<(u64, Arc<str>)> {
        if !self.deltas.is_empty() || self.key.is_empty() || self.key_tick + 1 != tick {
            return Vec::new();
        }
        let mut kept = Vec::new();
        let mut bytes = 0;
        for (t, frame) in std::iter::once((self.key_tick, &self.key)).chain(self.earlier.iter().rev().map(|(t, f)| (*t, f))) {
            bytes += frame.len();
            if kept.len() == CATCH_UP_SNAPSHOTS || bytes > CATCH_UP_BYTES {
                break;
            }
            kept.push((t, frame.clone()));
        }
        kept.reverse();
        kept
    }
}

/// A row of `GET /api/shards`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShardInfo {
    pub name: String,
    pub sim: String,
    pub tick_hz: u32,
    pub tick: u64,
    pub players: usize,
    pub subscribers: usize,
    pub persist: bool,
}

/// The last published state.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    pub name: String,
    pub sim: String,
    pub tick: u64,
    pub state: Arc<Value>,
}

struct PlayerSlot {
    /// Open subscriptions of this player (a user may watch from several sockets).
    streams: usize,
    /// Input tokens (refilled at `inputs_per_sec`, at most one second's worth).
    tokens: f64,
    refilled: Instant,
    last_active: Instant,
}

pub struct Shard {
    spec: Arc<ShardSpec>,
    name: Arc<str>,
    name_json: String,
    instance: Option<Box<dyn Instance>>,
    limits: ShardLimits,
    observer: Arc<dyn ShardObserver>,
    names: Arc<DashMap<String, Addr<Shard>>>,
    writer: Addr<Writer>,
    clock: TickClock,
    period: Duration,
    dt: f64,
    /// Tick N since `epoch` is due at `epoch + N * period`.
    epoch: Instant,
    since_epoch: u64,
    tick: u64,
    inputs: Vec<(Arc<str>, Value)>,
    players: HashMap<Arc<str>, PlayerSlot>,
    subscribers: HashMap<u64, Option<Arc<str>>>,
    out: watch::Sender<Arc<Published>>,
    last_state: Arc<Value>,
    stopping: bool,
    ended: Option<Ended>,
    last_overrun_log: Option<Instant>,
}

/// A panic's message, for the log.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(non-string panic payload)".into())
}

/// Runs simulation code; a panic becomes `Err(message)`.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
}

impl Shard {
    pub(super) fn new(
        spec: ShardSpec,
        limits: ShardLimits,
        observer: Arc<dyn ShardObserver>,
        names: Arc<DashMap<String, Addr<Shard>>>,
        writer: Addr<Writer>,
        clock: TickClock,
    ) -> Shard {
        let name: Arc<str> = spec.name.as_str().into();
        let name_json = serde_json::to_string(&spec.name).unwrap_or_else(|_| "\"\"".into());
        let period = Duration::from_secs_f64(1.0 / f64::from(spec.tick_hz.max(1)));
        let placeholder = Published { shard: name.clone(), tick: 0, key_tick: 0, key: "".into(), deltas: Vec::new(), earlier: Vec::new(), ended: None };
        let (out, _) = watch::channel(Arc::new(placeholder));
        Shard {
            name,
            name_json,
            instance: None,
            limits,
            observer,
            names,
            writer,
            clock,
            period,
            dt: period.as_secs_f64(),
            epoch: Instant::now(),
            since_epoch: 0,
            tick: 0,
            inputs: Vec::new(),
            players: HashMap::new(),
            subscribers: HashMap::new(),
            out,
            last_state: Arc::new(Value::Null),
            stopping: false,
            ended: None,
            last_overrun_log: None,
            spec: Arc::new(spec),
        }
    }

    fn snapshot_frame(&self, tick: u64, state: &Value) -> Arc<str> {
        let state = serde_json::to_string(state).unwrap_or_else(|_| "null".into());
        format!("{{\"type\":\"snapshot\",\"shard\":{},\"tick\":{tick},\"state\":{state}}}", self.name_json).into()
    }

    fn delta_frame(&self, tick: u64, delta: &Value) -> Arc<str> {
        let delta = serde_json::to_string(delta).unwrap_or_else(|_| "null".into());
        format!("{{\"type\":\"delta\",\"shard\":{},\"tick\":{tick},\"base\":{},\"delta\":{delta}}}", self.name_json, tick - 1).into()
    }

    /// The simulation panicked: subscribers are told, the shard stops, the process carries on.
    fn crash(&mut self, ctx: &mut Context<Self>, during: &str, message: &str) {
        tracing::error!(shard = %self.name, sim = %self.spec.sim, tick = self.tick, during, panic = %message, "simulation panicked; shard stopped");
        self.instance = None;
        self.end(Ended::Crashed);
        ctx.stop();
    }

    /// Publishes the end of the stream (the last value stays readable to every subscriber).
    fn end(&mut self, why: Ended) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(why);
        let last = self.out.borrow().clone();
        self.out.send_replace(Arc::new(Published {
            shard: self.name.clone(),
            tick: last.tick,
            key_tick: last.key_tick,
            key: last.key.clone(),
            deltas: last.deltas.clone(),
            earlier: last.earlier.clone(),
            ended: Some(why),
        }));
    }

    /// Adds `player` if new, within the players limit; the simulation hears `join`.
    fn admit(&mut self, ctx: &mut Context<Self>, player: &Arc<str>) -> Result<(), PlazaError> {
        if self.players.contains_key(player) {
            return Ok(());
        }
        let max = self.limits.max_players;
        if self.players.len() >= max {
            return Err(PlazaError::LimitReached { code: "SHARD_FULL", message: format!("shard '{}' has its {max} players", self.name) });
        }
        let Some(instance) = self.instance.as_mut() else { return Err(unavailable(&self.name)) };
        if let Err(panic) = guarded(|| instance.join(player)) {
            self.crash(ctx, "join", &panic);
            return Err(crashed(&self.name));
        }
        let now = Instant::now();
        let tokens = f64::from(self.limits.inputs_per_sec);
        self.players.insert(player.clone(), PlayerSlot { streams: 0, tokens, refilled: now, last_active: now });
        Ok(())
    }

    fn remove_player(&mut self, ctx: &mut Context<Self>, player: &Arc<str>) {
        self.players.remove(player);
        if let Some(instance) = self.instance.as_mut() {
            if let Err(panic) = guarded(|| instance.leave(player)) {
                self.crash(ctx, "leave", &panic);
            }
        }
    }

    fn schedule_next(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut due = self.epoch + self.period.mul_f64(self.since_epoch as f64);
        if now.saturating_duration_since(due) > MAX_CATCH_UP {
            let behind = (now.duration_since(due).as_secs_f64() / self.period.as_secs_f64()) as u64;
            tracing::warn!(shard = %self.name, ticks = behind, "shard fell too far behind its schedule; skipping ahead");
            self.observer.skipped(behind);
            self.epoch = now;
            self.since_epoch = 0;
            due = now;
        }
        self.clock.wake_at(due, ctx.address().recipient());
    }

    fn run_tick(&mut self, ctx: &mut Context<Self>) {
        if self.stopping || self.ended.is_some() {
            return;
        }
        let due = self.epoch + self.period.mul_f64(self.since_epoch as f64);
        let began = Instant::now();
        let lateness = began.saturating_duration_since(due);
        let inputs = std::mem::take(&mut self.inputs);
        let (dt, prev) = (self.dt, self.last_state.clone());
        let keyframe = self.tick + 1 - self.out.borrow().key_tick >= self.limits.keyframe_every;
        let Some(instance) = self.instance.as_mut() else { return };
        self.clock.tick_started();
        let outcome = guarded(|| {
            let mut rejected = 0u32;
            for (player, input) in &inputs {
                if let Err(e) = instance.apply_input(player, input) {
                    rejected += 1;
                    tracing::debug!(player = %player, error = %e, "input rejected by the simulation");
                }
            }
            instance.step(dt);
            let state = instance.snapshot();
            let delta = if keyframe || prev.is_null() { None } else { instance.delta(&prev, &state) };
            (state, delta, rejected)
        });
        self.clock.tick_ended();
        let (state, delta, _rejected) = match outcome {
            Ok(o) => o,
            Err(panic) => return self.crash(ctx, "step", &panic),
        };
        self.tick += 1;
        self.since_epoch += 1;
        let tick = self.tick;
        let published = match delta {
            Some(d) => {
                let last = self.out.borrow().clone();
                let mut deltas = last.deltas.clone();
                deltas.push((tick, self.delta_frame(tick, &d)));
                let (key_tick, key) = (last.key_tick, last.key.clone());
                Published { shard: self.name.clone(), tick, key_tick, key, deltas, earlier: Vec::new(), ended: None }
            }
            None => {
                let key = self.snapshot_frame(tick, &state);
                let earlier = self.out.borrow().earlier_for(tick);
                Published { shard: self.name.clone(), tick, key_tick: tick, key, deltas: Vec::new(), earlier, ended: None }
            }
        };
        self.last_state = Arc::new(state);
        self.out.send_replace(Arc::new(published));
        let took = began.elapsed();
        self.observer.tick(took, lateness);
        if took > self.period {
            self.observer.overrun();
            if self.last_overrun_log.is_none_or(|t| t.elapsed() >= OVERRUN_LOG_EVERY) {
                self.last_overrun_log = Some(Instant::now());
                tracing::warn!(shard = %self.name, tick, took_ms = took.as_secs_f64() * 1e3, budget_ms = self.dt * 1e3, "tick overran its budget");
            }
        }
        if tick.is_multiple_of(u64::from(self.spec.tick_hz)) {
            self.sweep_idle_players(ctx);
        }
        self.schedule_next(ctx);
    }

    /// Players with no subscription that have been silent past `player_idle` leave.
    fn sweep_idle_players(&mut self, ctx: &mut Context<Self>) {
        let idle = self.limits.player_idle;
        let gone: Vec<Arc<str>> =
            self.players.iter().filter(|(_, p)| p.streams == 0 && p.last_active.elapsed() >= idle).map(|(k, _)| k.clone()).collect();
        for player in gone {
            self.remove_player(ctx, &player);
        }
    }

    fn save_op(&self) -> Write {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let params = vec![
            SqlValue::Text(self.spec.name.clone()),
            SqlValue::Text(self.spec.sim.clone()),
            SqlValue::Integer(self.tick as i64),
            SqlValue::Text(self.last_state.to_string()),
            SqlValue::Integer(now),
        ];
        Write { auth: AuthContext::admin(), ops: vec![WriteOp::Internal { sql: SAVE_SQL, params }] }
    }
}

fn unavailable(name: &str) -> PlazaError {
    PlazaError::Unavailable(format!("shard '{name}' is not running"))
}

fn crashed(name: &str) -> PlazaError {
    PlazaError::Unavailable(format!("shard '{name}' crashed"))
}

impl Actor for Shard {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        if self.ended.is_none() {
            self.end(Ended::Stopped);
        }
        let me = ctx.address();
        self.names.remove_if(&*self.name, |_, addr| *addr == me);
        if self.instance.is_some() || self.ended == Some(Ended::Crashed) {
            self.observer.subscribers(-(self.subscribers.len() as i64));
            self.observer.stopped(&self.name, self.ended == Some(Ended::Crashed));
        }
        tracing::info!(shard = %self.name, tick = self.tick, ended = ?self.ended, "shard stopped");
    }
}

impl Handler<Tick> for Shard {
    type Result = ();
    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        self.run_tick(ctx);
    }
}

/// Builds the simulation on the shard's own thread (fresh, or from its stored snapshot at the
/// stored tick, read on the read threads first) and starts ticking. Messages sent meanwhile
/// wait in the mailbox. An error stops the shard.
#[derive(Message)]
#[rtype(result = "Result<(), PlazaError>")]
pub struct Boot {
    pub kind: Arc<dyn super::SimulationKind>,
    pub load: Option<super::Loader>,
}

impl Handler<Boot> for Shard {
    type Result = ResponseFuture<Result<(), PlazaError>>;
    fn handle(&mut self, msg: Boot, ctx: &mut Context<Self>) -> Self::Result {
        let Boot { kind, load } = msg;
        let Some(loader) = load else {
            let built = self.build(ctx, &kind, None);
            return Box::pin(async move { built });
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        ctx.wait(loader.load().into_actor(self).map(move |loaded, act, ctx| {
            let built = match loaded {
                Ok(snapshot) => act.build(ctx, &kind, snapshot),
                Err(e) => {
                    ctx.stop();
                    Err(e)
                }
            };
            let _ = tx.send(built);
        }));
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(PlazaError::Unavailable("the shard stopped while starting".into()))) })
    }
}

impl Shard {
    fn build(&mut self, ctx: &mut Context<Self>, kind: &Arc<dyn super::SimulationKind>, snapshot: Option<(u64, Value)>) -> Result<(), PlazaError> {
        let config = &self.spec.config;
        let name = &self.name;
        let built = guarded(|| match &snapshot {
            Some((tick, snapshot)) => match kind.restore(config, snapshot) {
                Ok(instance) => {
                    tracing::info!(shard = %name, tick, "resuming from the stored snapshot");
                    Ok((instance, *tick))
                }
                Err(e) => {
                    tracing::warn!(shard = %name, error = %e, "cannot resume from the stored snapshot; starting fresh");
                    kind.init(config).map(|i| (i, 0))
                }
            },
            None => kind.init(config).map(|i| (i, 0)),
        });
        let (instance, tick) = match built {
            Ok(Ok(built)) => built,
            Ok(Err(e)) => {
                ctx.stop();
                return Err(PlazaError::Validation(format!("shard '{}': {e}", self.name)));
            }
            Err(panic) => {
                ctx.stop();
                tracing::error!(shard = %self.name, panic = %panic, "simulation panicked while starting");
                return Err(PlazaError::Validation(format!("shard '{}': the simulation panicked while starting: {panic}", self.name)));
            }
        };
        let state = match guarded(|| instance.snapshot()) {
            Ok(s) => s,
            Err(panic) => {
                ctx.stop();
                return Err(PlazaError::Validation(format!("shard '{}': the simulation panicked in snapshot: {panic}", self.name)));
            }
        };
        // Players of a resumed state are known from the start (and leave when idle).
        let now = Instant::now();
        let tokens = f64::from(self.limits.inputs_per_sec);
        for player in guarded(|| instance.players()).unwrap_or_default().into_iter().take(self.limits.max_players) {
            self.players.insert(player.into(), PlayerSlot { streams: 0, tokens, refilled: now, last_active: now });
        }
        self.instance = Some(instance);
        self.tick = tick;
        let key = self.snapshot_frame(tick, &state);
        self.last_state = Arc::new(state);
        self.out.send_replace(Arc::new(Published { shard: self.name.clone(), tick, key_tick: tick, key, deltas: Vec::new(), earlier: Vec::new(), ended: None }));
        self.observer.started(&self.name);
        tracing::info!(shard = %self.name, sim = %self.spec.sim, tick_hz = self.spec.tick_hz, tick, "shard started");
        self.epoch = Instant::now() + self.period;
        self.since_epoch = 0;
        self.schedule_next(ctx);
        Ok(())
    }
}

/// Queues an input for the next tick; answers that tick's number. Sent with `do_send` (a
/// socket's inputs, which expect no answer), a refusal goes to `refused` instead.
#[derive(Message)]
#[rtype(result = "Result<u64, PlazaError>")]
pub struct Input {
    pub player: Arc<str>,
    pub input: Value,
    pub refused: Option<Recipient<InputRefused>>,
}

/// An input sent without waiting was refused.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InputRefused {
    pub shard: Arc<str>,
    pub error: PlazaError,
}

impl Handler<Input> for Shard {
    type Result = Result<u64, PlazaError>;
    fn handle(&mut self, mut msg: Input, ctx: &mut Context<Self>) -> Self::Result {
        let refused = msg.refused.take();
        let queued = self.queue(msg, ctx);
        if let (Err(e), Some(to)) = (&queued, refused) {
            to.do_send(InputRefused { shard: self.name.clone(), error: e.clone() });
        }
        queued
    }
}

impl Shard {
    fn queue(&mut self, msg: Input, ctx: &mut Context<Self>) -> Result<u64, PlazaError> {
        if self.stopping || self.ended.is_some() {
            return Err(unavailable(&self.name));
        }
        self.admit(ctx, &msg.player)?;
        let Some(instance) = self.instance.as_ref() else { return Err(unavailable(&self.name)) };
        match guarded(|| instance.check_input(&msg.input)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.observer.input(false);
                return Err(PlazaError::Validation(e));
            }
            Err(panic) => {
                self.crash(ctx, "check_input", &panic);
                return Err(crashed(&self.name));
            }
        }
        let rate = f64::from(self.limits.inputs_per_sec);
        let Some(slot) = self.players.get_mut(&msg.player) else { return Err(unavailable(&self.name)) };
        let now = Instant::now();
        slot.tokens = (slot.tokens + now.duration_since(slot.refilled).as_secs_f64() * rate).min(rate);
        slot.refilled = now;
        if slot.tokens < 1.0 {
            self.observer.input(false);
            return Err(PlazaError::RateLimited { retry_after_secs: 1 });
        }
        slot.tokens -= 1.0;
        slot.last_active = now;
        self.observer.input(true);
        self.inputs.push((msg.player, msg.input));
        Ok(self.tick + 1)
    }
}

/// A stream subscribes; `player` (the session's user) joins the simulation. Answers the
/// receiver of published ticks, whose current value is the latest full state.
#[derive(Message)]
#[rtype(result = "Result<watch::Receiver<Arc<Published>>, PlazaError>")]
pub struct Subscribe {
    pub subscriber: u64,
    pub player: Option<Arc<str>>,
}

impl Handler<Subscribe> for Shard {
    type Result = Result<watch::Receiver<Arc<Published>>, PlazaError>;
    fn handle(&mut self, msg: Subscribe, ctx: &mut Context<Self>) -> Self::Result {
        if self.stopping || self.ended.is_some() || self.instance.is_none() {
            return Err(unavailable(&self.name));
        }
        if !self.subscribers.contains_key(&msg.subscriber) {
            let max = self.limits.max_subscribers;
            if self.subscribers.len() >= max {
                return Err(PlazaError::LimitReached { code: "SHARD_FULL", message: format!("shard '{}' has its {max} subscribers", self.name) });
            }
            if let Some(player) = &msg.player {
                self.admit(ctx, player)?;
                if let Some(slot) = self.players.get_mut(player) {
                    slot.streams += 1;
                }
            }
            self.subscribers.insert(msg.subscriber, msg.player);
            self.observer.subscribers(1);
        }
        Ok(self.out.subscribe())
    }
}

/// A stream stops watching (unsubscribe, or it closed); its player leaves with its last one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub subscriber: u64,
}

impl Handler<Unsubscribe> for Shard {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, ctx: &mut Context<Self>) {
        let Some(player) = self.subscribers.remove(&msg.subscriber) else { return };
        self.observer.subscribers(-1);
        let Some(player) = player else { return };
        let last = match self.players.get_mut(&player) {
            Some(slot) => {
                slot.streams = slot.streams.saturating_sub(1);
                slot.streams == 0
            }
            None => false,
        };
        if last {
            self.remove_player(ctx, &player);
        }
    }
}

#[derive(Message)]
#[rtype(result = "ShardInfo")]
pub struct Info;

impl Handler<Info> for Shard {
    type Result = MessageResult<Info>;
    fn handle(&mut self, _: Info, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ShardInfo {
            name: self.spec.name.clone(),
            sim: self.spec.sim.clone(),
            tick_hz: self.spec.tick_hz,
            tick: self.tick,
            players: self.players.len(),
            subscribers: self.subscribers.len(),
            persist: self.spec.persist,
        })
    }
}

#[derive(Message)]
#[rtype(result = "ShardSnapshot")]
pub struct Snapshot;

impl Handler<Snapshot> for Shard {
    type Result = MessageResult<Snapshot>;
    fn handle(&mut self, _: Snapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(ShardSnapshot {
            name: self.spec.name.clone(),
            sim: self.spec.sim.clone(),
            tick: self.tick,
            state: self.last_state.clone(),
        })
    }
}

/// Stops the shard; a persisting one first stores its last snapshot through the Writer (when
/// `save`). Subscribers see the stream end with `Ended::Stopped` (`Ended::Draining` when
/// `draining`). No tick runs after this is handled, so players that leave meanwhile (their
/// sockets closing on a drain) are still in what is saved.
#[derive(Message)]
#[rtype(result = "Result<(), PlazaError>")]
pub struct Stop {
    pub save: bool,
    pub draining: bool,
}

impl Handler<Stop> for Shard {
    type Result = ResponseActFuture<Self, Result<(), PlazaError>>;
    fn handle(&mut self, msg: Stop, _: &mut Context<Self>) -> Self::Result {
        // No more ticks: what is saved is the state subscribers saw last.
        self.stopping = true;
        let save = (msg.save && self.spec.persist && self.instance.is_some()).then(|| self.save_op());
        let writer = self.writer.clone();
        let (name, draining) = (self.name.clone(), msg.draining);
        Box::pin(
            async move {
                match save {
                    Some(write) => writer.send(write).await?.map(drop),
                    None => Ok(()),
                }
            }
            .into_actor(self)
            .map(move |saved, act, ctx| {
                match &saved {
                    Ok(()) if act.spec.persist => tracing::info!(shard = %name, tick = act.tick, "shard snapshot saved"),
                    Ok(()) => {}
                    Err(e) => tracing::error!(shard = %name, error = %e, "could not save the shard's snapshot"),
                }
                act.end(if draining { Ended::Draining } else { Ended::Stopped });
                ctx.stop();
                saved
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(tick: u64, key_tick: u64) -> Published {
        let deltas = (key_tick + 1..=tick).map(|t| (t, Arc::<str>::from(format!("d{t}")))).collect();
        Published { shard: "s".into(), tick, key_tick, key: format!("k{key_tick}").into(), deltas, earlier: Vec::new(), ended: None }
    }

    fn frames(p: &Published, last: Option<u64>) -> Vec<String> {
        p.frames_after(last).map(|(_, _, f)| f.to_string()).collect()
    }

    /// Publishes full snapshots for ticks 1..=tick, each kept from the one before.
    fn snapshots_up_to(tick: u64) -> Published {
        (2..=tick).fold(published(1, 1), |prev, t| Published { earlier: prev.earlier_for(t), ..published(t, t) })
    }

    #[test]
    fn without_deltas_subscribers_catch_up_on_the_snapshots_kept() {
        let p = snapshots_up_to(40);
        assert_eq!(frames(&p, Some(37)), ["k38", "k39", "k40"], "a few ticks behind: every one it missed");
        assert_eq!(frames(&p, Some(39)), ["k40"]);
        assert_eq!(frames(&p, None), ["k40"], "a new subscriber starts from the latest");
        let kept = 40 - CATCH_UP_SNAPSHOTS as u64;
        assert_eq!(frames(&p, Some(kept - 1)).len(), CATCH_UP_SNAPSHOTS + 1, "the oldest kept is the first it gets");
        assert_eq!(frames(&p, Some(kept - 1))[0], format!("k{kept}"));
        assert_eq!(frames(&p, Some(3))[0], format!("k{kept}"), "further behind: what is kept, the rest skipped");
        assert!(p.frames_after(Some(37)).all(|(_, kind, _)| kind == FrameKind::Snapshot));

        // Big states keep fewer, within the byte bound.
        let big = |t: u64| Published { key: format!("k{t}{}", " ".repeat(CATCH_UP_BYTES / 3)).into(), ..published(t, t) };
        let p = (2..=10).fold(big(1), |prev, t| Published { earlier: prev.earlier_for(t), ..big(t) });
        let ticks: Vec<u64> = p.frames_after(Some(1)).map(|(t, _, _)| t).collect();
        assert_eq!(ticks, [8, 9, 10], "two earlier snapshots fit the bound, then the latest");
    }

    #[test]
    fn subscribers_catch_up_from_what_they_last_received() {
        let p = published(13, 10);
        assert_eq!(frames(&p, None), ["k10", "d11", "d12", "d13"], "new subscriber: full snapshot, then deltas");
        assert_eq!(frames(&p, Some(12)), ["d13"], "up to date: one delta");
        assert_eq!(frames(&p, Some(10)), ["d11", "d12", "d13"], "skipped ticks: the deltas it missed");
        assert_eq!(frames(&p, Some(7)), ["k10", "d11", "d12", "d13"], "missed the key: starts over from it");
        assert!(frames(&p, Some(13)).is_empty());
        assert_eq!(frames(&published(5, 5), Some(4)), ["k5"], "full snapshots only");
    }
}

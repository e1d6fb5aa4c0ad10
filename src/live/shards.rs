//! A stream's shard subscriptions, the same on `/ws` and SSE: subscribe (the session's user
//! joins as a player), unsubscribe, inputs, and the delivery of published ticks.
//!
//! A subscription holds the shard's watch receiver and reads the latest published tick only
//! when the stream can write: a WebSocket whose client is not reading is not polled at all, an
//! SSE stream whose queue is full skips the tick. Either way the subscriber catches up from the
//! last tick it received as far as the shard keeps frames (see `Published::frames_after`),
//! beyond that only the latest state, is never disconnected for being slow, and the shard never
//! waits on it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use actix::dev::ToEnvelope;
use plaza_actors::shards::shard::{InputRefused, Subscribe, Unsubscribe};
use plaza_actors::shards::{Ended, Published, Shard};
use plaza_actors::PlazaError;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{Backlogged, Frame, Sink};
use crate::error::ApiError;

/// The shards one stream watches, by name.
#[derive(Default)]
pub struct ShardSubs {
    subs: HashMap<Arc<str>, Watching>,
    /// Tells a subscription's reply from a later one of the same name.
    generation: u64,
}

struct Watching {
    shard: Addr<Shard>,
    generation: u64,
    handle: Option<SpawnHandle>,
    /// The last tick this stream received.
    last: Option<u64>,
}

/// A stream that can watch shards.
pub trait ShardStream: Sink {
    fn shard_subs(&mut self) -> &mut ShardSubs;
    /// The shard a stream was opened for has ended (SSE closes; a WebSocket carries on).
    fn shard_ended(&mut self, _ctx: &mut Self::Context) {}
}

/// The player a stream's caller plays as: the session's user. The admin watches without
/// playing; anonymous callers may not subscribe.
pub fn player(auth: &plaza_actors::model::policy::AuthContext) -> Result<Option<Arc<str>>, PlazaError> {
    match (&auth.user_id, auth.admin) {
        (Some(user), _) => Ok(Some(user.as_str().into())),
        (None, true) => Ok(None),
        (None, false) => Err(PlazaError::Forbidden("shards need a session (a guest session will do) or the admin token".into())),
    }
}

fn error_frame<A: Sink>(act: &mut A, ctx: &mut A::Context, e: PlazaError, shard: &str) {
    let e = ApiError::from(e);
    super::send(act, ctx, Frame::error(e.code(), &e, Some(shard)));
}

/// `shard_subscribe`: joins the shard (as the session's user) and starts receiving its ticks,
/// the current full state first.
pub fn subscribe<A>(act: &mut A, ctx: &mut A::Context, shard: &str)
where
    A: ShardStream,
    A::Context: AsyncContext<A>,
{
    let core = act.core();
    let (subscriber, max) = (core.id(), core.state.config.ws_max_subscriptions);
    let found = player(&core.auth).and_then(|p| core.state.plaza.shards.find(shard).map(|addr| (p, addr)));
    let (player, addr) = match found {
        Ok(found) => found,
        Err(e) => return error_frame(act, ctx, e, shard),
    };
    let subs = act.shard_subs();
    if subs.subs.contains_key(shard) {
        return error_frame(act, ctx, PlazaError::Conflict(format!("already subscribed to shard '{shard}'")), shard);
    }
    if subs.subs.len() >= max {
        return error_frame(act, ctx, PlazaError::Validation(format!("at most {max} shard subscriptions per stream")), shard);
    }
    subs.generation += 1;
    let generation = subs.generation;
    let name: Arc<str> = shard.into();
    subs.subs.insert(name.clone(), Watching { shard: addr.clone(), generation, handle: None, last: None });
    let reply = addr.send(Subscribe { subscriber, player });
    ctx.spawn(reply.into_actor(act).map(move |reply, act, ctx| {
        let current = act.shard_subs().subs.get(&name).is_some_and(|w| w.generation == generation);
        match reply.map_err(PlazaError::from).and_then(|r| r) {
            // Unsubscribed (or subscribed again) meanwhile: the shard has heard about that.
            Ok(_) if !current => {}
            Ok(updates) => attach(act, ctx, name, addr, updates),
            Err(e) => {
                if current {
                    act.shard_subs().subs.remove(&name);
                }
                error_frame(act, ctx, e, &name);
            }
        }
    }));
}

/// Starts delivering a subscription the shard has accepted.
pub fn attach<A>(act: &mut A, ctx: &mut A::Context, name: Arc<str>, addr: Addr<Shard>, updates: watch::Receiver<Arc<Published>>)
where
    A: ShardStream,
    A::Context: AsyncContext<A>,
{
    // The current value first (the latest full state), then each change as the stream can take it.
    let ticks = futures_util::stream::unfold((updates, true), |(mut rx, first)| async move {
        if !first {
            rx.changed().await.ok()?;
        }
        let latest = rx.borrow_and_update().clone();
        Some((latest, (rx, false)))
    });
    let key = name.clone();
    let handle = ctx.spawn(actix::fut::wrap_stream(ticks).map(move |p, act: &mut A, ctx: &mut A::Context| deliver(act, ctx, &key, &p)).finish());
    let subs = act.shard_subs();
    let generation = subs.subs.get(&name).map_or_else(|| { subs.generation += 1; subs.generation }, |w| w.generation);
    subs.subs.insert(name, Watching { shard: addr, generation, handle: Some(handle), last: None });
}

/// Writes what brings this subscriber from its last tick to the published one; a full queue
/// skips the rest (the next tick catches up). The end of the shard is told once.
fn deliver<A: ShardStream>(act: &mut A, ctx: &mut A::Context, name: &Arc<str>, p: &Published) {
    let Some(mut last) = act.shard_subs().subs.get(name).map(|w| w.last) else { return };
    for (tick, kind, text) in p.frames_after(last) {
        match act.write(Frame { kind: kind.as_str(), seq: None, text: text.to_string() }, ctx) {
            Ok(()) => {
                act.core().state.metrics.frames_out.inc();
                last = Some(tick);
            }
            Err(Backlogged) => break,
        }
    }
    if let Some(w) = act.shard_subs().subs.get_mut(name) {
        w.last = last;
    }
    let Some(ended) = p.ended else { return };
    act.shard_subs().subs.remove(name);
    let frame = match ended {
        Ended::Crashed => Frame::error("SHARD_CRASHED", "the shard's simulation crashed and the shard has stopped", Some(name)),
        Ended::Stopped => Frame::error("SHARD_STOPPED", "the shard was stopped", Some(name)),
        // The drain notice (SERVER_RESTARTING) tells the stream; the shard says nothing.
        Ended::Draining => return,
    };
    // An error frame is a notice: it goes out even past the queue's bound.
    let _ = act.write(frame, ctx);
    act.shard_ended(ctx);
}

/// `shard_unsubscribe`: answers `{"type":"shard_unsubscribed","shard"}`; the player leaves
/// with its last subscription.
pub fn unsubscribe<A>(act: &mut A, ctx: &mut A::Context, shard: &str)
where
    A: ShardStream,
    A::Context: AsyncContext<A>,
{
    let subscriber = act.core().id();
    match act.shard_subs().subs.remove(shard) {
        Some(w) => {
            if let Some(h) = w.handle {
                ctx.cancel_future(h);
            }
            w.shard.do_send(Unsubscribe { subscriber });
            super::send(act, ctx, Frame::json("shard_unsubscribed", &json!({"type": "shard_unsubscribed", "shard": shard})));
        }
        None => error_frame(act, ctx, PlazaError::NotFound(format!("not subscribed to shard '{shard}'")), shard),
    }
}

/// `shard_input`: queued for the shard's next tick, as the session's user, without waiting
/// for the shard. Only refusals are answered (error frame with `ref` = the shard), through
/// [`InputRefused`].
pub fn input<A>(act: &mut A, ctx: &mut A::Context, shard: &str, input: Value)
where
    A: ShardStream + Handler<InputRefused>,
    A::Context: AsyncContext<A> + ToEnvelope<A, InputRefused>,
{
    let core = act.core();
    let player = match &core.auth.user_id {
        Some(user) => Arc::<str>::from(user.as_str()),
        None => {
            let e = PlazaError::Forbidden("shard input needs a session: the player is the session's user".into());
            return error_frame(act, ctx, e, shard);
        }
    };
    if let Err(e) = core.state.plaza.shards.input_nowait(shard, player, input, ctx.address().recipient()) {
        error_frame(act, ctx, e, shard);
    }
}

/// A refused input's error frame.
pub fn refused<A: Sink>(act: &mut A, ctx: &mut A::Context, msg: InputRefused) {
    error_frame(act, ctx, msg.error, &msg.shard);
}

/// The stream closed: its shards forget it (its players leave with their last subscription).
pub fn stopped<A: ShardStream>(act: &mut A) {
    let subscriber = act.core().id();
    for (_, w) in act.shard_subs().subs.drain() {
        w.shard.do_send(Unsubscribe { subscriber });
    }
}

/// The shard named by a frame's `"shard"`.
pub fn shard_name(frame: &Value) -> Result<&str, PlazaError> {
    frame.get("shard").and_then(Value::as_str).filter(|s| !s.is_empty()).ok_or_else(|| PlazaError::Validation("\"shard\" is required".into()))
}

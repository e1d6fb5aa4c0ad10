//! The one stream core behind `/ws` and SSE (`/api/events`): a slot in the Streams registry,
//! credentials, subscriptions (authorise → register → replay from `since` → gate → live), slow
//! consumers, and the notices that close a stream (drain, session ended). A WebSocket and an SSE
//! stream differ only in how a frame is written: each is an actor that implements [`Sink`].

mod gate;
pub mod shards;
mod slot;
pub mod sse;

use std::collections::HashMap;
use std::sync::Arc;

use actix::dev::ToEnvelope;
use actix::prelude::*;
use actix_web::web::{self, Bytes};
use bytestring::ByteString;
use plaza_actors::changelog::{Deliver, Replay, SlowConsumer, Subscribe, Subscription, Unsubscribe};
use plaza_actors::model::change::Change;
use plaza_actors::model::policy::AuthContext;
use plaza_actors::model::query::{Filter, Query};
use plaza_actors::streams::Notice;
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::AppState;
pub use gate::{Gate, Overflow};
pub use slot::StreamSlot;

/// Longest subscription id a client may choose.
pub const MAX_SUB_ID_LEN: usize = 128;

/// One frame for the client. `kind` is its `type` (SSE's event name); change frames carry the
/// seq (SSE's event id, so `Last-Event-ID` resumes).
pub struct Frame {
    pub kind: &'static str,
    pub seq: Option<i64>,
    pub text: String,
}

impl Frame {
    pub fn json(kind: &'static str, value: &Value) -> Frame {
        Frame { kind, seq: None, text: value.to_string() }
    }

    pub fn error(code: &str, message: impl std::fmt::Display, reference: Option<&str>) -> Frame {
        let mut frame = json!({"type": "error", "code": code, "message": message.to_string()});
        if let Some(r) = reference {
            frame["ref"] = json!(r);
        }
        Frame::json("error", &frame)
    }
}

/// A frame built once and written to many streams: its text is reference-counted, so a
/// WebSocket writes the same bytes to every socket without a copy or an encoding per socket.
pub struct SharedFrame {
    pub kind: &'static str,
    pub seq: Option<i64>,
    pub text: ByteString,
}

impl SharedFrame {
    /// A frame whose JSON was encoded once for every receiver (room events, pub/sub messages).
    pub fn json(kind: &'static str, json: &Arc<str>) -> SharedFrame {
        SharedFrame { kind, seq: None, text: shared_text(json) }
    }

    /// The change frame, identical on WebSocket and SSE; `event_json` is serialised once per
    /// event. Every stream on a worker thread gets the same event, mostly under the same
    /// subscription id, so the frame is built once per thread and shared (see [`ChangeFrames`]).
    pub fn change(sub: &str, seq: i64, event_json: &str) -> SharedFrame {
        let text = CHANGE_FRAMES.with(|frames| frames.borrow_mut().get(sub, seq, event_json));
        SharedFrame { kind: "change", seq: Some(seq), text }
    }
}

impl From<SharedFrame> for Frame {
    fn from(f: SharedFrame) -> Frame {
        Frame { kind: f.kind, seq: f.seq, text: f.text.to_string() }
    }
}

/// The bytes of `json` as frame text, without copying them.
fn shared_text(json: &Arc<str>) -> ByteString {
    // SAFETY: the bytes come from a `str`, so they are UTF-8.
    unsafe { ByteString::from_bytes_unchecked(Bytes::from_owner(ArcText(json.clone()))) }
}

/// An `Arc<str>` as the owner of the bytes of a frame.
struct ArcText(Arc<str>);

impl AsRef<[u8]> for ArcText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The change frames built last on this thread. A hit needs the same seq, subscription id and
/// event text, so a frame is never shared between different events (or apps in one process).
#[derive(Default)]
struct ChangeFrames {
    recent: Vec<CachedFrame>,
    next: usize,
}

struct CachedFrame {
    seq: i64,
    sub: Box<str>,
    event: ByteString,
    text: ByteString,
}

/// Distinct (event, subscription id) pairs kept per thread.
const CHANGE_FRAMES_KEPT: usize = 8;

thread_local! {
    static CHANGE_FRAMES: std::cell::RefCell<ChangeFrames> = std::cell::RefCell::default();
}

impl ChangeFrames {
    fn get(&mut self, sub: &str, seq: i64, event_json: &str) -> ByteString {
        if let Some(hit) = self.recent.iter().find(|f| f.seq == seq && &*f.sub == sub && &*f.event == event_json) {
            return hit.text.clone();
        }
        let quoted = serde_json::to_string(sub).unwrap_or_else(|_| "\"\"".into());
        let text: ByteString = format!("{{\"type\":\"change\",\"sub\":{quoted},\"event\":{event_json}}}").into();
        let cached = CachedFrame { seq, sub: sub.into(), event: event_json.into(), text: text.clone() };
        if self.recent.len() < CHANGE_FRAMES_KEPT {
            self.recent.push(cached);
        } else {
            self.recent[self.next] = cached;
            self.next = (self.next + 1) % CHANGE_FRAMES_KEPT;
        }
        text
    }
}

/// Why a stream is closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    SlowConsumer,
    Restart,
    SessionEnded,
}

/// The queue towards the client is full: the client is not reading.
pub struct Backlogged;

/// How a stream writes: the only thing WebSocket and SSE do differently.
pub trait Sink: Actor {
    fn core(&mut self) -> &mut StreamCore;
    fn write(&mut self, frame: Frame, ctx: &mut Self::Context) -> Result<(), Backlogged>;
    /// Writes a frame shared with other streams; by default as an ordinary frame (a copy).
    fn write_shared(&mut self, frame: SharedFrame, ctx: &mut Self::Context) -> Result<(), Backlogged> {
        self.write(frame.into(), ctx)
    }
    /// Closes the stream after the frames already written.
    fn close(&mut self, why: Closing, ctx: &mut Self::Context);
}

/// What every stream holds: who it is for, its subscriptions, its registry slot.
pub struct StreamCore {
    pub state: web::Data<AppState>,
    pub auth: AuthContext,
    subs: HashMap<Arc<str>, Gate>,
    slot: StreamSlot,
}

impl StreamCore {
    pub fn new(state: web::Data<AppState>, auth: AuthContext, slot: StreamSlot) -> StreamCore {
        StreamCore { state, auth, subs: HashMap::new(), slot }
    }

    pub fn id(&self) -> u64 {
        self.slot.id()
    }

    /// The bound of a stream's outbound queue (its mailbox).
    pub fn outbound_max(&self) -> usize {
        self.state.config.ws_outbound_max
    }

    /// Checks a subscribe request and holds a gate for it; the returned `Pending` registers it.
    pub fn prepare(&mut self, id: Arc<str>, entity: &str, filter: Option<&Value>, since: Option<i64>) -> Result<Pending, PlazaError> {
        if self.subs.contains_key(&id) {
            return Err(PlazaError::Conflict(format!("subscription '{id}' already exists")));
        }
        let max = self.state.config.ws_max_subscriptions;
        if self.subs.len() >= max {
            return Err(PlazaError::Validation(format!("at most {max} subscriptions per socket")));
        }
        let sub = subscription(&self.state, entity, filter, &self.auth)?;
        self.subs.insert(id.clone(), Gate::new(self.state.config.ws_outbound_max));
        Ok(Pending { state: self.state.clone(), subscriber: self.id(), id, sub, since })
    }

    /// Ends one subscription; answers whether it existed.
    pub fn unsubscribe(&mut self, id: &Arc<str>) -> bool {
        let existed = self.subs.remove(id).is_some();
        self.state.plaza.changelog.do_send(Unsubscribe { subscriber: self.id(), id: Some(id.clone()) });
        existed
    }
}

/// A subscription checked and gated, not yet registered with the ChangeLog.
pub struct Pending {
    state: web::Data<AppState>,
    subscriber: u64,
    id: Arc<str>,
    sub: Subscription,
    since: Option<i64>,
}

/// A registered subscription with the missed events to send before the live ones.
pub struct Opened {
    pub id: Arc<str>,
    /// The `seq` the client is told (its `since`, or the log position).
    pub start: i64,
    /// Live events after this seq follow the replay.
    pub seq: i64,
    pub events: Vec<Arc<Change>>,
}

impl Pending {
    pub fn id(&self) -> Arc<str> {
        self.id.clone()
    }

    /// Registers with the ChangeLog (live delivery to `stream`) and reads the replay.
    pub async fn open<A>(self, stream: Addr<A>) -> Result<Opened, ApiError>
    where
        A: Actor + Handler<Deliver> + Handler<SlowConsumer>,
        A::Context: ToEnvelope<A, Deliver> + ToEnvelope<A, SlowConsumer>,
    {
        let Pending { state, subscriber, id, sub, since } = self;
        let request = Subscribe {
            subscriber,
            id: id.clone(),
            sub: sub.clone(),
            since,
            deliver: stream.clone().recipient(),
            kick: stream.recipient(),
        };
        let subscribed = state.plaza.changelog.send(request).await??;
        let events = replay(&state, &sub, subscribed.replay).await?;
        Ok(Opened { id, start: since.unwrap_or(subscribed.seq), seq: subscribed.seq, events })
    }
}

/// Starts a stream: joins the registry (for drain and session notices). The actor also bounds
/// its mailbox at `outbound_max()`: that is its outbound queue.
pub fn started<A>(act: &mut A, ctx: &mut A::Context)
where
    A: Sink + Handler<Notice>,
    A::Context: AsyncContext<A> + ToEnvelope<A, Notice>,
{
    act.core().slot.attach(ctx.address().recipient());
}

/// Ends every live subscription of a stream that has stopped.
pub fn stopped(core: &StreamCore) {
    core.state.plaza.changelog.do_send(Unsubscribe { subscriber: core.id(), id: None });
}

/// Writes a frame; a full queue closes the stream as a slow consumer.
pub fn send<A: Sink>(act: &mut A, ctx: &mut A::Context, frame: Frame) {
    match act.write(frame, ctx) {
        Ok(()) => act.core().state.metrics.frames_out.inc(),
        Err(Backlogged) => slow_consumer(act, ctx),
    }
}

/// Writes a shared frame; a full queue closes the stream as a slow consumer.
pub fn send_shared<A: Sink>(act: &mut A, ctx: &mut A::Context, frame: SharedFrame) {
    match act.write_shared(frame, ctx) {
        Ok(()) => act.core().state.metrics.frames_out.inc(),
        Err(Backlogged) => slow_consumer(act, ctx),
    }
}

/// Sends the `subscribed` frame and the replay, then opens the gate to live events.
pub fn begin<A: Sink>(act: &mut A, ctx: &mut A::Context, opened: Opened) {
    let Opened { id, start, seq, events } = opened;
    send(act, ctx, Frame::json("subscribed", &json!({"type": "subscribed", "id": &*id, "seq": start})));
    for change in &events {
        let json = serde_json::to_string(&**change).unwrap_or_default();
        send_shared(act, ctx, SharedFrame::change(&id, change.seq, &json));
    }
    let held = act.core().subs.get_mut(&id).map(|gate| gate.open(seq)).unwrap_or_default();
    for d in held {
        deliver_now(act, ctx, &d);
    }
}

/// A subscription that could not be opened: forgotten, and the client told why.
pub fn abandon<A: Sink>(act: &mut A, ctx: &mut A::Context, id: &Arc<str>, e: ApiError) {
    act.core().unsubscribe(id);
    send(act, ctx, Frame::error(e.code(), &e, Some(id)));
}

/// A live event: written now, or held while its subscription's replay is in flight.
pub fn deliver<A: Sink>(act: &mut A, ctx: &mut A::Context, d: Deliver) {
    let Some(gate) = act.core().subs.get_mut(&d.sub) else { return };
    match gate.admit(d) {
        Ok(Some(d)) => deliver_now(act, ctx, &d),
        Ok(None) => {}
        Err(Overflow) => slow_consumer(act, ctx),
    }
}

fn deliver_now<A: Sink>(act: &mut A, ctx: &mut A::Context, d: &Deliver) {
    act.core().state.metrics.fanout_latency.observe(d.committed_at.elapsed().as_secs_f64());
    send_shared(act, ctx, SharedFrame::change(&d.sub, d.change.seq, &d.json));
}

pub fn slow_consumer<A: Sink>(act: &mut A, ctx: &mut A::Context) {
    act.core().state.metrics.slow_consumers.inc();
    let notice = Frame::error("SLOW_CONSUMER", "this stream fell too far behind and is closed; reconnect and resume with since", None);
    // Past the bound already: the notice is best effort, the close is not.
    let _ = act.write(notice, ctx);
    act.close(Closing::SlowConsumer, ctx);
}

/// A notice from the Streams registry: the stream says why and closes.
pub fn notice<A: Sink>(act: &mut A, ctx: &mut A::Context, notice: Notice) {
    let (frame, why) = match notice {
        Notice::Reconnect => {
            (Frame::error("SERVER_RESTARTING", "the server is restarting; reconnect and resume with since", None), Closing::Restart)
        }
        Notice::SessionEnded => {
            (Frame::error("SESSION_REVOKED", "the session of this stream was revoked or expired", None), Closing::SessionEnded)
        }
    };
    let _ = act.write(frame, ctx);
    act.close(why, ctx);
}

/// Implements the registry and change-log messages for a [`Sink`] actor by handing them to this
/// module: every stream answers them the same way.
#[macro_export]
macro_rules! stream_handlers {
    ($actor:ty) => {
        impl actix::Handler<plaza_actors::changelog::Deliver> for $actor {
            type Result = ();
            fn handle(&mut self, msg: plaza_actors::changelog::Deliver, ctx: &mut Self::Context) {
                $crate::live::deliver(self, ctx, msg);
            }
        }
        impl actix::Handler<plaza_actors::changelog::SlowConsumer> for $actor {
            type Result = ();
            fn handle(&mut self, _: plaza_actors::changelog::SlowConsumer, ctx: &mut Self::Context) {
                $crate::live::slow_consumer(self, ctx);
            }
        }
        impl actix::Handler<plaza_actors::streams::Notice> for $actor {
            type Result = ();
            fn handle(&mut self, msg: plaza_actors::streams::Notice, ctx: &mut Self::Context) {
                $crate::live::notice(self, ctx, msg);
            }
        }
    };
}

/// A subscription from client input: the entity must exist and the filter must parse.
fn subscription(state: &AppState, entity: &str, filter: Option<&Value>, auth: &AuthContext) -> Result<Subscription, PlazaError> {
    let def = state.plaza.reader.entity(entity)?;
    let filter = match filter {
        Some(f) if !f.is_null() => Query::parse(def, f)?.filter,
        _ => Filter::everything(),
    };
    Ok(Subscription { entity: def.name.clone(), filter, auth: auth.clone() })
}

/// A subscription id chosen by the client: a short string or a number.
pub fn sub_id(v: Option<&Value>) -> Result<Arc<str>, PlazaError> {
    match v {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SUB_ID_LEN => Ok(s.as_str().into()),
        Some(Value::Number(n)) => Ok(n.to_string().into()),
        _ => Err(PlazaError::Validation(format!("\"id\" must be a string of 1 to {MAX_SUB_ID_LEN} characters"))),
    }
}

/// The missed events a subscription should see, in seq order, read from memory or the store.
async fn replay(state: &web::Data<AppState>, sub: &Subscription, replay: Replay) -> Result<Vec<Arc<Change>>, ApiError> {
    let max = state.config.ws_replay_max;
    // Further behind than a replay serves: the client pulls first, as after a pruned cursor.
    let too_far = |until: i64| PlazaError::ResyncRequired { oldest_seq: until - max as i64 + 1, last_seq: until };
    let events = match replay {
        Replay::Nothing => return Ok(Vec::new()),
        Replay::Events(events) => events,
        Replay::FromStore { since, until } => {
            if (until - since) as usize > max {
                return Err(too_far(until).into());
            }
            let (changes, _) = state.read(move |r| r.changes_since(since, (until - since) as usize)).await??;
            changes.into_iter().map(Arc::new).collect()
        }
    };
    if events.len() > max {
        return Err(too_far(events.last().map_or(0, |c| c.seq)).into());
    }
    let policies = &state.plaza.policies;
    Ok(events.into_iter().filter(|c| sub.wants(policies, c)).collect())
}

/// Parses the `filter` query parameter (URL-encoded filter JSON) for SSE.
pub fn filter_param(query: &HashMap<String, String>) -> Result<Option<Value>, ApiError> {
    query
        .get("filter")
        .filter(|f| !f.is_empty())
        .map(|f| serde_json::from_str(f).map_err(|e| PlazaError::Validation(format!("filter is not JSON: {e}")).into()))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_frames_are_shared_only_for_the_same_event_and_subscription() {
        let a = SharedFrame::change("s", 7, r#"{"seq":7}"#);
        let again = SharedFrame::change("s", 7, r#"{"seq":7}"#);
        assert_eq!(&*a.text, r#"{"type":"change","sub":"s","event":{"seq":7}}"#);
        assert_eq!(a.text.as_bytes().as_ptr(), again.text.as_bytes().as_ptr(), "built once, shared");
        let other_app = SharedFrame::change("s", 7, r#"{"seq":7,"entity":"Other"}"#);
        assert_eq!(&*other_app.text, r#"{"type":"change","sub":"s","event":{"seq":7,"entity":"Other"}}"#);
        let other_sub = SharedFrame::change("q\"", 7, r#"{"seq":7}"#);
        assert_eq!(&*other_sub.text, r#"{"type":"change","sub":"q\"","event":{"seq":7}}"#);
    }

    #[test]
    fn shared_json_frames_keep_the_text() {
        let json: Arc<str> = r#"{"type":"room"}"#.into();
        let frame = SharedFrame::json("room", &json);
        assert_eq!(&*frame.text, &*json);
        assert_eq!(Frame::from(frame).text, r#"{"type":"room"}"#);
    }
}

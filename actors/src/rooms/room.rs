//! The `Room` actor: one per running room. It owns the room's members (user id → its live
//! connections and/or an HTTP membership that expires), their presence, the room seq and a ring
//! buffer of recent `room_event` frames (so a `join` with `since` resumes without a gap), the
//! epoch (new each time the room starts, so a `since` from an earlier life is never replayed),
//! and the state document with its version.
//!
//! Messages: `Join`, `Leave`, `Broadcast`, `SetPresence`, `PatchState`, `Describe`, `Count`,
//! `Persist`. Every frame is serialised once and offered to each member connection with
//! `try_send`; a full mailbox drops that connection (told `SLOW_CONSUMER`), never the room.
//! With no members for the idle time the room stops, saving its state first when its rule
//! persists it; it tells the registry only once nothing remains to save.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rusqlite::types::Value as SqlValue;
use serde::Serialize;
use serde_json::Value;

use super::{presence_frame, MemberConn, Resync, RoomError, RoomFrame, RoomSettings, RoomStats, Stopped};
use crate::changelog::SlowConsumer;
use crate::error::{PlazaError, Result};
use crate::model::policy::AuthContext;
use crate::store::reader::{Read, ReadWorker};
use crate::store::writer::{Write, WriteOp, Writer};

/// Messages a room may have waiting before senders that use `send` wait their turn.
pub const ROOM_MAILBOX: usize = 1024;
/// How often a room looks for connections that went away without a `Leave` (a safety net
/// under the `Leave` every closing connection sends; no ghost outlives it).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// How often a persisting room saves a changed state while it runs (besides at stop and drain),
/// so a crash loses at most this much.
pub const PERSIST_INTERVAL: Duration = Duration::from_secs(10);

const SAVE_SQL: &str = "INSERT INTO _plaza_rooms (name, state, state_version, saved_at) VALUES (?, ?, ?, ?)
    ON CONFLICT(name) DO UPDATE SET state = excluded.state, state_version = excluded.state_version, saved_at = excluded.saved_at
    WHERE excluded.state_version >= _plaza_rooms.state_version";

/// Where a persisting room's state is kept: saved through the Writer, loaded on the read threads.
#[derive(Clone)]
pub struct RoomStore {
    pub writer: Addr<Writer>,
    pub readers: Addr<ReadWorker>,
}

/// Fixed at start by the registry.
pub(super) struct RoomSetup {
    pub name: Arc<str>,
    pub id: u64,
    pub persist: bool,
    pub max_members: usize,
    pub settings: Arc<RoomSettings>,
    pub stats: Arc<RoomStats>,
    pub store: Option<RoomStore>,
    pub registry: Recipient<Stopped>,
}

struct Member {
    presence: Value,
    conns: Vec<MemberConn>,
    /// Until when an HTTP join keeps the member (without a socket).
    http_until: Option<Instant>,
    bucket: Bucket,
}

impl Member {
    fn gone(&self) -> bool {
        self.conns.is_empty() && self.http_until.is_none()
    }
}

/// Events per second per member, with a burst of one second's worth.
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: u32) -> Bucket {
        Bucket { tokens: rate as f64, at: Instant::now() }
    }

    /// Takes one token; `Err(seconds to wait)` when there is none.
    fn take(&mut self, rate: u32) -> std::result::Result<(), u64> {
        if rate == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let rate = rate as f64;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - self.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

pub struct Room {
    setup: RoomSetup,
    epoch: Arc<str>,
    seq: u64,
    /// The last `buffer` room_event frames with their seqs, oldest first.
    recent: VecDeque<(u64, Arc<str>)>,
    members: HashMap<Arc<str>, Member>,
    state: Value,
    state_version: u64,
    /// The state changed since it was last saved (persisting rooms only).
    dirty: bool,
    idle: Option<SpawnHandle>,
    stopped: bool,
}

/// How a member takes part: through a socket, or over HTTP (kept for the HTTP member TTL).
#[derive(Clone)]
pub enum Via {
    Socket(MemberConn),
    Http,
}

/// Which membership leaves: one socket, or the HTTP one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViaId {
    Socket(u64),
    Http,
}

/// Joins `user` (a member id: the session's user, or one the admin names). A socket gets the
/// `joined` frame, then the missed events when it resumes, through its mailbox, so they come
/// before any live frame.
#[derive(Message, Clone)]
#[rtype(result = "Result<Joined>")]
pub struct Join {
    pub user: Arc<str>,
    pub presence: Option<Value>,
    pub via: Via,
    /// Resume after this seq of this epoch (from an earlier `joined` or `room_event`).
    pub resume: Option<(u64, String)>,
}

pub struct Joined {
    pub room: Addr<Room>,
    /// For HTTP joins (a socket has it as its `joined` frame).
    pub snapshot: Option<Snapshot>,
}

/// The room as a member first sees it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub name: Arc<str>,
    pub epoch: Arc<str>,
    pub seq: u64,
    /// (user id, presence), ordered by user id.
    pub members: Vec<(Arc<str>, Value)>,
    pub state: Value,
    pub state_version: u64,
    /// Events after the `since` of a `Describe`, oldest first.
    pub events: Vec<Arc<str>>,
}

#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub user: Arc<str>,
    pub via: ViaId,
}

/// A room event. `from` is the member sending it, or `None` for the admin (the server), who
/// need not be a member.
#[derive(Message)]
#[rtype(result = "Result<Delivered>")]
pub struct Broadcast {
    pub from: Option<Arc<str>>,
    pub event: String,
    pub data: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Connections the event was handed to.
    pub delivered: usize,
    pub seq: u64,
}

#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SetPresence {
    pub user: Arc<str>,
    pub presence: Value,
}

/// An RFC 7386 merge patch to the state document; answers the new `state_version`.
/// `reference` (the client's `ref`) is echoed in the `room_state` frame so its sender can
/// recognise it.
#[derive(Message, Clone)]
#[rtype(result = "Result<u64>")]
pub struct PatchState {
    pub from: Option<Arc<str>>,
    pub patch: Value,
    pub reference: Option<Value>,
}

/// The room as it stands; with `since` (seq, epoch), also the buffered events after it.
#[derive(Message)]
#[rtype(result = "Result<Snapshot>")]
pub struct Describe {
    pub since: Option<(u64, String)>,
}

/// How many members the room has.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Count;

/// Saves the state now if the room persists and it changed (drain); answers whether it saved.
#[derive(Message)]
#[rtype(result = "Result<bool>")]
pub struct Persist;

#[derive(Serialize)]
struct MemberView<'a> {
    user_id: &'a str,
    presence: &'a Value,
}

#[derive(Serialize)]
struct JoinedFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    epoch: &'a str,
    seq: u64,
    members: Vec<MemberView<'a>>,
    state: &'a Value,
    state_version: u64,
}

#[derive(Serialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    seq: u64,
    from: Option<&'a str>,
    event: &'a str,
    data: &'a Value,
}

#[derive(Serialize)]
struct StateFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    version: u64,
    patch: &'a Value,
    from: Option<&'a str>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    reference: Option<&'a Value>,
}

/// Serialised size of a JSON value, without building the string.
fn json_size(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, v);
    count.0
}

fn to_json<T: Serialize>(frame: &T) -> Arc<str> {
    // Serialising our own frame types cannot fail (string keys only).
    serde_json::to_string(frame).unwrap_or_default().into()
}

fn new_epoch() -> Arc<str> {
    uuid::Uuid::now_v7().simple().to_string().into()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Room {
    pub(super) fn new(setup: RoomSetup) -> Room {
        Room {
            setup,
            epoch: new_epoch(),
            seq: 0,
            recent: VecDeque::new(),
            members: HashMap::new(),
            state: Value::Object(Default::default()),
            state_version: 0,
            dirty: false,
            idle: None,
            stopped: false,
        }
    }

    fn settings(&self) -> &RoomSettings {
        &self.setup.settings
    }

    fn resync(&self, reason: String) -> PlazaError {
        RoomError::ResyncRequired {
            reason,
            resync: Box::new(Resync {
                epoch: self.epoch.clone(),
                seq: self.seq,
                state: self.state.clone(),
                state_version: self.state_version,
            }),
        }
        .into()
    }

    /// The buffered events after `since` in `epoch`, or RESYNC_REQUIRED when they are not all
    /// there (another epoch, a seq this room never reached, or older than the buffer).
    fn events_since(&self, since: u64, epoch: &str) -> Result<Vec<Arc<str>>> {
        if epoch != &*self.epoch {
            return Err(self.resync(format!("room '{}' restarted since epoch {epoch}", self.setup.name)));
        }
        if since > self.seq {
            return Err(self.resync(format!("room '{}' has not reached seq {since}", self.setup.name)));
        }
        let oldest_known = self.seq - self.recent.len() as u64;
        if since < oldest_known {
            return Err(self.resync(format!(
                "room '{}' keeps its last {} events; seq {since} is older",
                self.setup.name,
                self.settings().buffer
            )));
        }
        Ok(self.recent.iter().filter(|(seq, _)| *seq > since).map(|(_, json)| json.clone()).collect())
    }

    fn snapshot(&self, events: Vec<Arc<str>>) -> Snapshot {
        let mut members: Vec<(Arc<str>, Value)> = self.members.iter().map(|(u, m)| (u.clone(), m.presence.clone())).collect();
        members.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot {
            name: self.setup.name.clone(),
            epoch: self.epoch.clone(),
            seq: self.seq,
            members,
            state: self.state.clone(),
            state_version: self.state_version,
            events,
        }
    }

    fn joined_frame(&self) -> Arc<str> {
        let mut members: Vec<MemberView<'_>> =
            self.members.iter().map(|(u, m)| MemberView { user_id: u, presence: &m.presence }).collect();
        members.sort_by(|a, b| a.user_id.cmp(b.user_id));
        to_json(&JoinedFrame {
            kind: "joined",
            room: &self.setup.name,
            epoch: &self.epoch,
            seq: self.seq,
            members,
            state: &self.state,
            state_version: self.state_version,
        })
    }

    /// Offers a frame to one connection; `false` when it is gone or full (then also kicked).
    fn offer(&self, conn: &MemberConn, json: &Arc<str>) -> bool {
        match conn.deliver.try_send(RoomFrame { json: json.clone() }) {
            Ok(()) => true,
            Err(SendError::Full(_)) => {
                conn.kick.do_send(SlowConsumer);
                RoomStats::add(&self.setup.stats.slow_members_dropped, 1);
                false
            }
            Err(SendError::Closed(_)) => false,
        }
    }

    /// Sends a frame to every member connection but `skip`; drops the ones that cannot take it.
    fn fanout(&mut self, json: &Arc<str>, skip: Option<u64>, ctx: &mut Context<Self>) -> usize {
        let mut delivered = 0;
        let mut dropped = Vec::new();
        for (user, member) in &self.members {
            for conn in member.conns.iter().filter(|c| Some(c.id) != skip) {
                if self.offer(conn, json) {
                    delivered += 1;
                } else {
                    dropped.push((user.clone(), conn.id));
                }
            }
        }
        RoomStats::add(&self.setup.stats.events_out, delivered as u64);
        for (user, id) in dropped {
            self.drop_membership(&user, ViaId::Socket(id), ctx);
        }
        delivered
    }

    /// Ends one of `user`'s memberships; the last one makes the member leave (`presence left`).
    fn drop_membership(&mut self, user: &Arc<str>, via: ViaId, ctx: &mut Context<Self>) {
        let Some(member) = self.members.get_mut(user) else { return };
        match via {
            ViaId::Socket(id) => member.conns.retain(|c| c.id != id),
            ViaId::Http => member.http_until = None,
        }
        if member.gone() {
            self.members.remove(user);
            self.setup.stats.members.fetch_sub(1, Ordering::Relaxed);
            let frame = presence_frame(&self.setup.name, "left", user, None);
            self.fanout(&frame, None, ctx);
            self.watch_idle(ctx);
        }
    }

    /// A member sending an event: it must be one, and within its rate.
    fn admit(&mut self, from: Option<&Arc<str>>) -> Result<()> {
        if let Some(user) = from {
            let rate = self.setup.settings.events_per_sec;
            let Some(member) = self.members.get_mut(user) else {
                return Err(RoomError::NotMember { room: self.setup.name.to_string() }.into());
            };
            member.bucket.take(rate).map_err(|retry_after_secs| PlazaError::RateLimited { retry_after_secs })?;
        }
        RoomStats::add(&self.setup.stats.events_in, 1);
        Ok(())
    }

    /// With no members, the room stops after the idle time; a member arriving cancels that.
    fn watch_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.members.is_empty() {
            if let Some(handle) = self.idle.take() {
                ctx.cancel_future(handle);
            }
        } else if self.idle.is_none() && !self.stopped {
            self.idle = Some(ctx.run_later(self.settings().idle, |act, ctx| {
                act.idle = None;
                act.stop_if_idle(ctx);
            }));
        }
    }

    fn stop_if_idle(&mut self, ctx: &mut Context<Self>) {
        if !self.members.is_empty() || self.stopped {
            return;
        }
        if !self.needs_save() {
            return self.stop_now(ctx);
        }
        // Save first; stop only if nobody came back and nothing changed meanwhile.
        self.save_in()
            .map(|saved, act, ctx| {
                if saved.is_ok() && act.members.is_empty() && !act.dirty {
                    act.stop_now(ctx);
                } else {
                    act.watch_idle(ctx);
                }
            })
            .spawn(ctx);
    }

    fn stop_now(&mut self, ctx: &mut Context<Self>) {
        self.stopped = true;
        self.setup.registry.do_send(Stopped { name: self.setup.name.clone(), id: self.setup.id });
        ctx.stop();
    }

    fn needs_save(&self) -> bool {
        self.setup.persist && self.dirty && self.setup.store.is_some()
    }

    /// Writes the state through the Writer (the room goes on meanwhile) and marks it clean, so
    /// a change made while saving is saved next time.
    fn save(&mut self) -> impl std::future::Future<Output = Result<()>> + 'static {
        let store = self.setup.store.clone();
        let write = store.as_ref().filter(|_| self.needs_save()).map(|store| {
            self.dirty = false;
            let op = WriteOp::Internal {
                sql: SAVE_SQL,
                params: vec![
                    SqlValue::Text(self.setup.name.to_string()),
                    SqlValue::Text(self.state.to_string()),
                    SqlValue::Integer(self.state_version as i64),
                    SqlValue::Integer(now_ms()),
                ],
            };
            store.writer.send(Write { auth: AuthContext::admin(), ops: vec![op] })
        });
        let name = self.setup.name.clone();
        async move {
            let Some(write) = write else { return Ok(()) };
            match write.await.map_err(PlazaError::from).and_then(|r| r) {
                Ok(_) => Ok(()),
                Err(e) => {
                    tracing::error!(room = %name, error = %e, "could not save the room state; will retry");
                    Err(e)
                }
            }
        }
    }

    /// `save()` as an actor future that marks the state dirty again when the write failed.
    fn save_in(&mut self) -> impl ActorFuture<Self, Output = Result<()>> + 'static {
        self.save().into_actor(self).map(|saved, act, _| {
            if saved.is_err() {
                act.dirty = true;
            }
            saved
        })
    }

    /// Loads a persisting room's state on the read threads; no message is handled until it
    /// is in. A failed load stops the room (so an empty state never overwrites the saved one).
    fn load(&mut self, ctx: &mut Context<Self>) {
        let Some(store) = self.setup.store.clone().filter(|_| self.setup.persist) else { return };
        let name = self.setup.name.to_string();
        let read = store.readers.send(Read::new(move |r: &crate::store::Reader| r.room_state(&name)));
        ctx.wait(read.into_actor(self).map(|loaded, act, ctx| match loaded.map_err(PlazaError::from).and_then(|r| r) {
            Ok(Some((state, version))) => {
                act.state = state;
                act.state_version = version;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(room = %act.setup.name, error = %e, "could not load the room state; stopping the room");
                act.stop_now(ctx);
            }
        }));
    }

    fn expire_http(&mut self, user: Arc<str>, ctx: &mut Context<Self>) {
        let Some(until) = self.members.get(&user).and_then(|m| m.http_until) else { return };
        let now = Instant::now();
        if until > now {
            ctx.run_later(until - now, move |act, ctx| act.expire_http(user, ctx));
        } else {
            self.drop_membership(&user, ViaId::Http, ctx);
        }
    }

    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let dead: Vec<(Arc<str>, u64)> = self
            .members
            .iter()
            .flat_map(|(u, m)| m.conns.iter().filter(|c| !c.deliver.connected()).map(move |c| (u.clone(), c.id)))
            .collect();
        for (user, id) in dead {
            self.drop_membership(&user, ViaId::Socket(id), ctx);
        }
    }
}

impl Actor for Room {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(ROOM_MAILBOX);
        self.setup.stats.rooms.fetch_add(1, Ordering::Relaxed);
        self.load(ctx);
        ctx.run_interval(SWEEP_INTERVAL, |act, ctx| act.sweep(ctx));
        if self.setup.persist && self.setup.store.is_some() {
            ctx.run_interval(PERSIST_INTERVAL, |act, ctx| {
                if act.needs_save() {
                    act.save_in().map(|_, _, _| ()).spawn(ctx);
                }
            });
        }
        self.watch_idle(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stopped = true;
        let stats = &self.setup.stats;
        stats.rooms.fetch_sub(1, Ordering::Relaxed);
        stats.members.fetch_sub(self.members.len() as i64, Ordering::Relaxed);
    }
}

impl Handler<Join> for Room {
    type Result = Result<Joined>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Result<Joined> {
        if self.stopped {
            return Err(RoomError::Gone.into());
        }
        if let Some(presence) = &msg.presence {
            let (size, max) = (json_size(presence), self.settings().event_max_bytes);
            if size > max {
                return Err(RoomError::EventTooLarge { size, max }.into());
            }
        }
        let replay = match &msg.resume {
            Some((since, epoch)) => self.events_since(*since, epoch)?,
            None => Vec::new(),
        };
        let is_new = !self.members.contains_key(&msg.user);
        if is_new && self.members.len() >= self.setup.max_members {
            return Err(RoomError::Full { room: self.setup.name.to_string(), max: self.setup.max_members }.into());
        }
        let rate = self.settings().events_per_sec;
        let ttl = self.settings().http_member_ttl;
        let member = self.members.entry(msg.user.clone()).or_insert_with(|| Member {
            presence: Value::Null,
            conns: Vec::new(),
            http_until: None,
            bucket: Bucket::full(rate),
        });
        let updated = match msg.presence {
            Some(p) if p != member.presence => {
                member.presence = p;
                !is_new
            }
            _ => false,
        };
        let socket = match &msg.via {
            Via::Socket(conn) => {
                member.conns.retain(|c| c.id != conn.id);
                member.conns.push(conn.clone());
                Some(conn.clone())
            }
            Via::Http => {
                member.http_until = Some(Instant::now() + ttl);
                let user = msg.user.clone();
                ctx.run_later(ttl, move |act, ctx| act.expire_http(user, ctx));
                None
            }
        };
        if is_new {
            self.setup.stats.members.fetch_add(1, Ordering::Relaxed);
        }
        self.watch_idle(ctx);
        let presence = self.members.get(&msg.user).map(|m| m.presence.clone()).unwrap_or_default();
        let snapshot = match &socket {
            Some(conn) => {
                // joined, then the replay, then live frames: all through the one mailbox.
                let joined = self.joined_frame();
                let delivered = std::iter::once(&joined).chain(replay.iter()).take_while(|json| self.offer(conn, json)).count();
                RoomStats::add(&self.setup.stats.events_out, delivered as u64);
                if delivered < 1 + replay.len() {
                    self.drop_membership(&msg.user, ViaId::Socket(conn.id), ctx);
                }
                None
            }
            None => Some(self.snapshot(Vec::new())),
        };
        if is_new || updated {
            let event = if is_new { "joined" } else { "updated" };
            let frame = presence_frame(&self.setup.name, event, &msg.user, Some(&presence));
            let skip = socket.as_ref().map(|c| c.id);
            self.fanout(&frame, skip, ctx);
        }
        Ok(Joined { room: ctx.address(), snapshot })
    }
}

impl Handler<Leave> for Room {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        if let ViaId::Socket(id) = msg.via {
            // The `left` frame follows every frame the room sent this socket.
            let conn = self.members.get(&msg.user).and_then(|m| m.conns.iter().find(|c| c.id == id)).cloned();
            if let Some(conn) = conn {
                let left = to_json(&serde_json::json!({"type": "left", "room": &*self.setup.name}));
                self.offer(&conn, &left);
            }
        }
        self.drop_membership(&msg.user, msg.via, ctx);
    }
}

impl Handler<Broadcast> for Room {
    type Result = Result<Delivered>;

    fn handle(&mut self, msg: Broadcast, ctx: &mut Context<Self>) -> Result<Delivered> {
        if self.stopped {
            return Err(RoomError::Gone.into());
        }
        let seq = self.seq + 1;
        let json = to_json(&EventFrame {
            kind: "room_event",
            room: &self.setup.name,
            seq,
            from: msg.from.as_deref(),
            event: &msg.event,
            data: &msg.data,
        });
        let max = self.settings().event_max_bytes;
        if json.len() > max {
            return Err(RoomError::EventTooLarge { size: json.len(), max }.into());
        }
        self.admit(msg.from.as_ref())?;
        self.seq = seq;
        self.recent.push_back((seq, json.clone()));
        while self.recent.len() > self.settings().buffer {
            self.recent.pop_front();
        }
        let delivered = self.fanout(&json, None, ctx);
        Ok(Delivered { delivered, seq })
    }
}

impl Handler<SetPresence> for Room {
    type Result = Result<()>;

    fn handle(&mut self, msg: SetPresence, ctx: &mut Context<Self>) -> Result<()> {
        let size = json_size(&msg.presence);
        let max = self.settings().event_max_bytes;
        if size > max {
            return Err(RoomError::EventTooLarge { size, max }.into());
        }
        self.admit(Some(&msg.user))?;
        if let Some(member) = self.members.get_mut(&msg.user) {
            member.presence = msg.presence;
            let frame = presence_frame(&self.setup.name, "updated", &msg.user, Some(&member.presence));
            self.fanout(&frame, None, ctx);
        }
        Ok(())
    }
}

impl Handler<PatchState> for Room {
    type Result = Result<u64>;

    fn handle(&mut self, msg: PatchState, ctx: &mut Context<Self>) -> Result<u64> {
        if self.stopped {
            return Err(RoomError::Gone.into());
        }
        let max = self.settings().state_max_bytes;
        let patch_size = json_size(&msg.patch);
        if patch_size > max {
            return Err(RoomError::StateTooLarge { size: patch_size, max }.into());
        }
        let mut next = self.state.clone();
        json_patch::merge(&mut next, &msg.patch);
        let size = json_size(&next);
        if size > max {
            return Err(RoomError::StateTooLarge { size, max }.into());
        }
        self.admit(msg.from.as_ref())?;
        self.state = next;
        self.state_version += 1;
        self.dirty = true;
        RoomStats::add(&self.setup.stats.state_patches, 1);
        let frame = to_json(&StateFrame {
            kind: "room_state",
            room: &self.setup.name,
            version: self.state_version,
            patch: &msg.patch,
            from: msg.from.as_deref(),
            reference: msg.reference.as_ref(),
        });
        self.fanout(&frame, None, ctx);
        Ok(self.state_version)
    }
}

impl Handler<Describe> for Room {
    type Result = Result<Snapshot>;

    fn handle(&mut self, msg: Describe, _: &mut Context<Self>) -> Result<Snapshot> {
        let events = match &msg.since {
            Some((since, epoch)) => self.events_since(*since, epoch)?,
            None => Vec::new(),
        };
        Ok(self.snapshot(events))
    }
}

impl Handler<Count> for Room {
    type Result = usize;

    fn handle(&mut self, _: Count, _: &mut Context<Self>) -> usize {
        self.members.len()
    }
}

impl Handler<Persist> for Room {
    type Result = ResponseActFuture<Self, Result<bool>>;

    fn handle(&mut self, _: Persist, _: &mut Context<Self>) -> Self::Result {
        if !self.needs_save() {
            return Box::pin(fut::ready(Ok(false)));
        }
        Box::pin(self.save_in().map(|saved, _, _| saved.map(|()| true)))
    }
}

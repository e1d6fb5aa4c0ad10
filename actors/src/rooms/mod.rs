//! Rooms: named groups of members that broadcast events, share presence and a state document.
//!
//! Two actors, in the shape of the actix chat example: the [`RoomRegistry`] maps a room name to
//! its running [`Room`] (and starts one on first join), and each `Room` owns everything about
//! one room — its members and their connections, presence, the room seq, a ring buffer of
//! recent events for resumes, its epoch, and its state document. Frames reach a member's
//! connection as [`RoomFrame`]s offered with `try_send` to its bounded mailbox: the room never
//! waits on a member, and a member whose mailbox is full is dropped and told it is slow.
//!
//! Who may do what (the manifest's room rules) is checked by the caller before a message is
//! sent ([`crate::model::policy::RoomRules`]); the room checks membership, caps and rates.
//! [`Rooms::join`] is the one way in: it handles a join that reaches a room as it stops.

mod registry;
mod room;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::{json, Value};

use crate::changelog::SlowConsumer;
use crate::error::{PlazaError, Result};
use crate::model::policy::RoomRules;

pub use registry::{Lookup, Open, PersistAll, RoomList, RoomRegistry, Stopped};
pub use room::{
    Broadcast, Count, Delivered, Describe, Join, Joined, Leave, PatchState, Persist, Room, RoomStore, SetPresence, Snapshot, Via, ViaId,
};

/// Members per room unless the manifest's `rooms.max_members` says otherwise.
pub const DEFAULT_MAX_MEMBERS: usize = 100;
/// Rooms one WebSocket may be in at once.
pub const DEFAULT_MAX_PER_CONNECTION: usize = 50;
/// Rooms running in one process.
pub const DEFAULT_MAX_ROOMS: usize = 10_000;
/// Recent events a room keeps for resumes (`join` with `since`).
pub const DEFAULT_BUFFER: usize = 256;
/// A room with no members for this long stops.
pub const DEFAULT_IDLE: Duration = Duration::from_secs(120);
/// A member that joined over HTTP (no socket) is dropped this long after its last join.
pub const DEFAULT_HTTP_MEMBER_TTL: Duration = Duration::from_secs(60);
/// Largest room state document, serialised.
pub const DEFAULT_STATE_MAX_BYTES: usize = 64 * 1024;
/// Largest `room_event` frame, serialised (event name and data included).
pub const DEFAULT_EVENT_MAX_BYTES: usize = 16 * 1024;
/// Events (broadcasts, presence updates, state patches) per second per member, with a burst of
/// one second's worth.
pub const DEFAULT_EVENTS_PER_SEC: u32 = 20;

/// The limits and timings every room runs with.
#[derive(Debug, Clone)]
pub struct RoomSettings {
    pub max_members: usize,
    pub max_per_connection: usize,
    pub max_rooms: usize,
    pub buffer: usize,
    pub idle: Duration,
    pub http_member_ttl: Duration,
    pub state_max_bytes: usize,
    pub event_max_bytes: usize,
    pub events_per_sec: u32,
    /// Threads the rooms run on (each room lives on one of them).
    pub threads: usize,
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            max_members: DEFAULT_MAX_MEMBERS,
            max_per_connection: DEFAULT_MAX_PER_CONNECTION,
            max_rooms: DEFAULT_MAX_ROOMS,
            buffer: DEFAULT_BUFFER,
            idle: DEFAULT_IDLE,
            http_member_ttl: DEFAULT_HTTP_MEMBER_TTL,
            state_max_bytes: DEFAULT_STATE_MAX_BYTES,
            event_max_bytes: DEFAULT_EVENT_MAX_BYTES,
            events_per_sec: DEFAULT_EVENTS_PER_SEC,
            threads: 1,
        }
    }
}

/// One frame for one member's connection, serialised once for every member it goes to.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct RoomFrame {
    pub json: Arc<str>,
}

/// A member's live connection: where its frames go, and how it is told it was too slow
/// (it then closes, leaving all its rooms).
#[derive(Clone)]
pub struct MemberConn {
    /// The stream id, unique in the process.
    pub id: u64,
    pub deliver: Recipient<RoomFrame>,
    pub kick: Recipient<SlowConsumer>,
}

pub use crate::error::{Resync, RoomError};


/// Counters for `/metrics`, updated by the rooms as they work (plain atomics: no lock, and no
/// message to a room just to read them).
#[derive(Debug, Default)]
pub struct RoomStats {
    pub rooms: AtomicI64,
    pub members: AtomicI64,
    pub events_in: AtomicU64,
    /// Frames handed to member connections.
    pub events_out: AtomicU64,
    pub slow_members_dropped: AtomicU64,
    pub state_patches: AtomicU64,
    /// The last full second's rates, refreshed by the registry.
    pub events_in_per_s: AtomicU64,
    pub events_out_per_s: AtomicU64,
}

impl RoomStats {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Everything the server needs to reach rooms: the registry, the rules, settings and counters.
#[derive(Clone)]
pub struct Rooms {
    pub registry: Addr<RoomRegistry>,
    pub rules: Arc<RoomRules>,
    pub settings: Arc<RoomSettings>,
    pub stats: Arc<RoomStats>,
}

/// Times a join is tried when it meets rooms that stop under it.
const JOIN_ATTEMPTS: usize = 3;

impl Rooms {
    /// Joins `room` (started if it is not running). A join that reaches a room as it stops
    /// idle is sent again to the room that replaces it, so it is never lost.
    pub async fn join(&self, room: &str, join: Join) -> Result<Joined> {
        let name: Arc<str> = room.into();
        for _ in 0..JOIN_ATTEMPTS {
            let (id, addr) = self.registry.send(Open { name: name.clone() }).await??;
            match addr.send(join.clone()).await {
                Ok(Err(PlazaError::Room(RoomError::Gone))) | Err(_) => {
                    self.registry.do_send(Stopped { name: name.clone(), id });
                }
                Ok(outcome) => return outcome,
            }
        }
        Err(RoomError::Gone.into())
    }

    /// As [`Rooms::ask`], starting the room when it is not running.
    pub async fn ask_started<M>(&self, name: &str, msg: M) -> Result<M::Result>
    where
        M: Message + Clone + Send + 'static,
        M::Result: Send,
        Room: Handler<M>,
    {
        let name: Arc<str> = name.into();
        for _ in 0..JOIN_ATTEMPTS {
            let (id, addr) = self.registry.send(Open { name: name.clone() }).await??;
            match addr.send(msg.clone()).await {
                Ok(outcome) => return Ok(outcome),
                Err(_) => self.registry.do_send(Stopped { name: name.clone(), id }),
            }
        }
        Err(RoomError::Gone.into())
    }

    /// The running room called `name`, if any.
    pub async fn lookup(&self, name: &str) -> Result<Option<Addr<Room>>> {
        Ok(self.registry.send(Lookup { name: name.into() }).await?)
    }

    /// Sends `msg` to the running room `name`; 404 `NOT_FOUND` when it is not running.
    pub async fn ask<M>(&self, name: &str, msg: M) -> Result<M::Result>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        Room: Handler<M>,
    {
        let not_found = || PlazaError::NotFound(format!("room '{name}' does not exist"));
        let addr = self.lookup(name).await?.ok_or_else(not_found)?;
        addr.send(msg).await.map_err(|_| not_found())
    }
}

/// The `presence` frame.
pub(crate) fn presence_frame(room: &str, event: &str, user: &str, presence: Option<&Value>) -> Arc<str> {
    let mut frame = json!({"type": "presence", "room": room, "event": event, "user_id": user});
    if let Some(p) = presence {
        frame["presence"] = p.clone();
    }
    frame.to_string().into()
}

#[cfg(test)]
mod tests;

//! The `RoomRegistry`: room name → the running `Room`, and nothing about what is inside one.
//! It starts a room on first join (on one of the room threads, in turn) and forgets it only
//! when that same room says it stopped: each room has an id, so a late `Stopped` from an
//! earlier room of the same name never removes its successor.
//!
//! Messages: `Open` (get or start), `Lookup`, `RoomList`, `Stopped`, `PersistAll` (drain).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::room::{Persist, Room, RoomSetup, RoomStore};
use super::{RoomSettings, RoomStats};
use crate::error::{PlazaError, Result};
use crate::model::policy::RoomRules;

/// How often the per-second event rates in the stats are refreshed.
const RATE_INTERVAL: Duration = Duration::from_secs(1);

pub struct RoomRegistry {
    rooms: HashMap<Arc<str>, (u64, Addr<Room>)>,
    next_id: u64,
    threads: Vec<ArbiterHandle>,
    next_thread: usize,
    rules: Arc<RoomRules>,
    settings: Arc<RoomSettings>,
    stats: Arc<RoomStats>,
    store: Option<RoomStore>,
    /// Counter values at the last rate refresh.
    last_counts: (u64, u64),
}

impl RoomRegistry {
    /// Rooms run on `settings.threads` threads of their own (none: on the registry's thread).
    /// Without a `store` no room persists. Must be called inside an actix System.
    pub fn new(rules: Arc<RoomRules>, settings: Arc<RoomSettings>, stats: Arc<RoomStats>, store: Option<RoomStore>) -> Self {
        let threads = (0..settings.threads).map(|_| Arbiter::new().handle()).collect();
        RoomRegistry { rooms: HashMap::new(), next_id: 1, threads, next_thread: 0, rules, settings, stats, store, last_counts: (0, 0) }
    }

    fn start_room(&mut self, name: Arc<str>, registry: Recipient<Stopped>) -> (u64, Addr<Room>) {
        let id = self.next_id;
        self.next_id += 1;
        let setup = RoomSetup {
            name: name.clone(),
            id,
            persist: self.rules.persists(&name),
            max_members: self.rules.max_members().unwrap_or(self.settings.max_members),
            settings: self.settings.clone(),
            stats: self.stats.clone(),
            store: self.store.clone(),
            registry,
        };
        let addr = match self.threads.get(self.next_thread % self.threads.len().max(1)) {
            Some(thread) => Room::start_in_arbiter(thread, move |_| Room::new(setup)),
            None => Room::new(setup).start(),
        };
        self.next_thread = self.next_thread.wrapping_add(1);
        self.rooms.insert(name, (id, addr.clone()));
        (id, addr)
    }
}

impl Actor for RoomRegistry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(RATE_INTERVAL, |act, _| {
            let stats = &act.stats;
            let now = (RoomStats::get(&stats.events_in), RoomStats::get(&stats.events_out));
            let secs = RATE_INTERVAL.as_secs_f64();
            stats.events_in_per_s.store(((now.0 - act.last_counts.0) as f64 / secs) as u64, Ordering::Relaxed);
            stats.events_out_per_s.store(((now.1 - act.last_counts.1) as f64 / secs) as u64, Ordering::Relaxed);
            act.last_counts = now;
        });
    }
}

/// The running room `name`, started if there is none (and the process has room for one).
/// Answers its id, for `Stopped`.
#[derive(Message)]
#[rtype(result = "Result<(u64, Addr<Room>)>")]
pub struct Open {
    pub name: Arc<str>,
}

impl Handler<Open> for RoomRegistry {
    type Result = Result<(u64, Addr<Room>)>;

    fn handle(&mut self, msg: Open, ctx: &mut Context<Self>) -> Self::Result {
        if let Some((id, addr)) = self.rooms.get(&msg.name) {
            if addr.connected() {
                return Ok((*id, addr.clone()));
            }
        }
        let max = self.settings.max_rooms;
        if self.rooms.len() >= max && !self.rooms.contains_key(&msg.name) {
            return Err(PlazaError::Unavailable(format!("this server runs its maximum of {max} rooms; try again later")));
        }
        Ok(self.start_room(msg.name, ctx.address().recipient()))
    }
}

/// The running room `name`, if any (never starts one).
#[derive(Message)]
#[rtype(result = "Option<Addr<Room>>")]
pub struct Lookup {
    pub name: Arc<str>,
}

impl Handler<Lookup> for RoomRegistry {
    type Result = Option<Addr<Room>>;

    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        self.rooms.get(&msg.name).map(|(_, addr)| addr.clone())
    }
}

/// Every running room, by name.
#[derive(Message)]
#[rtype(result = "Vec<(Arc<str>, Addr<Room>)>")]
pub struct RoomList;

impl Handler<RoomList> for RoomRegistry {
    type Result = MessageResult<RoomList>;

    fn handle(&mut self, _: RoomList, _: &mut Context<Self>) -> Self::Result {
        let mut rooms: Vec<(Arc<str>, Addr<Room>)> = self.rooms.iter().map(|(n, (_, a))| (n.clone(), a.clone())).collect();
        rooms.sort_by(|a, b| a.0.cmp(&b.0));
        MessageResult(rooms)
    }
}

/// Room `id` called `name` has stopped (sent by the room itself, or by a caller that found it
/// gone). Forgotten only if it is still the room registered under that name.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stopped {
    pub name: Arc<str>,
    pub id: u64,
}

impl Handler<Stopped> for RoomRegistry {
    type Result = ();

    fn handle(&mut self, msg: Stopped, _: &mut Context<Self>) {
        if self.rooms.get(&msg.name).is_some_and(|(id, _)| *id == msg.id) {
            self.rooms.remove(&msg.name);
        }
    }
}

/// Saves every persisting room's state now (drain); answers how many rooms saved.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct PersistAll;

impl Handler<PersistAll> for RoomRegistry {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: PersistAll, _: &mut Context<Self>) -> Self::Result {
        let saves: Vec<_> = self.rooms.values().map(|(_, addr)| addr.send(Persist)).collect();
        Box::pin(async move {
            let mut saved = 0;
            for save in saves {
                if let Ok(Ok(true)) = save.await {
                    saved += 1;
                }
            }
            saved
        })
    }
}

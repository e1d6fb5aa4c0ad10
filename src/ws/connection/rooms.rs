//! Room frames on a `Connection`: `join`, `leave`, `broadcast`, `presence`, `state_patch`, and
//! the rooms the socket is in, so that when it stops — however it stops — it leaves them all.
//! Room frames reach the socket through its mailbox (the outbound queue) as `RoomFrame`s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use actix_web_actors::ws::WebsocketContext;
use plaza_actors::model::manifest::validate_room_name;
use plaza_actors::model::policy::RoomAction;
use plaza_actors::rooms::{
    Broadcast, Join, Leave, MemberConn, PatchState, Room, RoomError, RoomFrame, SetPresence, Via, ViaId,
};
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::Connection;
use crate::error::ApiError;
use crate::http::rooms::{event_name, member, sender};
use crate::live::{self, Frame, SharedFrame};

/// The rooms one socket is in, and those it is joining.
#[derive(Default)]
pub struct SocketRooms {
    joined: HashMap<Arc<str>, InRoom>,
    joining: HashSet<Arc<str>>,
}

struct InRoom {
    addr: Addr<Room>,
    /// The member this socket is in the room as.
    user: Arc<str>,
}

impl SocketRooms {
    /// Leaves every room (the socket stopped): each room drops this connection at once, and a
    /// member whose last connection it was leaves (`presence left`).
    pub fn leave_all(&mut self, conn: u64) {
        for (_, room) in self.joined.drain() {
            room.addr.do_send(Leave { user: room.user, via: ViaId::Socket(conn) });
        }
    }
}

/// An error about `room`: the API error body as a frame, with `ref` naming the room.
fn error_frame(e: &ApiError, room: &str) -> Frame {
    let mut frame = json!({"type": "error"});
    if let (Some(out), Value::Object(fields)) = (frame.as_object_mut(), &e.body()["error"]) {
        out.extend(fields.clone());
        out.insert("ref".into(), json!(room));
    }
    Frame::json("error", &frame)
}

fn since(frame: &Value) -> Result<Option<(u64, String)>, PlazaError> {
    let seq = match frame.get("since") {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v.as_u64().ok_or_else(|| PlazaError::Validation("\"since\" must be a room seq (an integer)".into()))?,
    };
    match frame.get("epoch").and_then(Value::as_str) {
        Some(epoch) => Ok(Some((seq, epoch.to_string()))),
        None => Err(PlazaError::Validation("\"since\" needs the \"epoch\" it belongs to (from joined)".into())),
    }
}

impl Connection {
    pub(super) fn on_room_frame(&mut self, kind: &str, frame: &Value, ctx: &mut WebsocketContext<Self>) {
        let room: Arc<str> = match frame.get("room").and_then(Value::as_str) {
            Some(r) => r.into(),
            None => return self.room_error(ctx, PlazaError::Validation("\"room\" is required".into()).into(), ""),
        };
        let outcome = validate_room_name(&room).and_then(|()| match kind {
            "join" => self.join_room(room.clone(), frame, ctx),
            "leave" => self.leave_room(room.clone(), ctx),
            "broadcast" => self.broadcast_room(room.clone(), frame, ctx),
            "presence" => self.room_presence(room.clone(), frame, ctx),
            _ => self.patch_room(room.clone(), frame, ctx),
        });
        if let Err(e) = outcome {
            self.room_error(ctx, e.into(), &room);
        }
    }

    fn room_error(&mut self, ctx: &mut WebsocketContext<Self>, e: ApiError, room: &str) {
        live::send(self, ctx, error_frame(&e, room));
    }

    fn join_room(&mut self, room: Arc<str>, frame: &Value, ctx: &mut WebsocketContext<Self>) -> Result<(), PlazaError> {
        let rooms = self.core.state.plaza.rooms.clone();
        let auth = &self.core.auth;
        rooms.rules.check(RoomAction::Join, auth, &room)?;
        let user = member(auth, frame)?;
        let resume = since(frame)?;
        if self.rooms.joining.contains(&room) {
            return Err(PlazaError::Conflict(format!("a join of room '{room}' is already on its way")));
        }
        let max = rooms.settings.max_per_connection;
        if !self.rooms.joined.contains_key(&room) && self.rooms.joined.len() + self.rooms.joining.len() >= max {
            return Err(RoomError::TooManyRooms { max }.into());
        }
        let conn = MemberConn { id: self.core.id(), deliver: ctx.address().recipient(), kick: ctx.address().recipient() };
        let join = Join { user: user.clone(), presence: frame.get("presence").cloned(), via: Via::Socket(conn), resume };
        self.rooms.joining.insert(room.clone());
        let name = room.clone();
        // The room writes `joined` (and any replay) into this socket's queue itself; this only
        // records the membership, or says why there is none.
        async move { rooms.join(&name, join).await }
            .into_actor(self)
            .map(move |joined, act, ctx| {
                act.rooms.joining.remove(&room);
                match joined {
                    Ok(joined) => {
                        act.rooms.joined.insert(room, InRoom { addr: joined.room, user });
                    }
                    Err(e) => act.room_error(ctx, e.into(), &room),
                }
            })
            .spawn(ctx);
        Ok(())
    }

    fn leave_room(&mut self, room: Arc<str>, ctx: &mut WebsocketContext<Self>) -> Result<(), PlazaError> {
        match self.rooms.joined.remove(&room) {
            // The room answers `left` after every frame it sent here.
            Some(r) => r.addr.do_send(Leave { user: r.user, via: ViaId::Socket(self.core.id()) }),
            None if self.rooms.joining.contains(&room) => {
                return Err(PlazaError::Conflict(format!("a join of room '{room}' is on its way; leave after joined")))
            }
            None => live::send(self, ctx, Frame::json("left", &json!({"type": "left", "room": &*room}))),
        }
        Ok(())
    }

    /// Sends `msg` to the room — straight to it when this socket is in it (queued now, so this
    /// socket's events keep their order), else through the registry — and turns a refusal into
    /// an error frame.
    fn tell_room<M, T>(&mut self, room: Arc<str>, msg: M, ctx: &mut WebsocketContext<Self>)
    where
        M: Message<Result = Result<T, PlazaError>> + Send + 'static,
        T: Send + 'static,
        Room: Handler<M>,
    {
        let reply = match self.rooms.joined.get(&room) {
            Some(r) => {
                let request = r.addr.send(msg);
                futures_util::future::Either::Left(async move { request.await.map_err(|_| PlazaError::from(RoomError::Gone))? })
            }
            None => {
                let rooms = self.core.state.plaza.rooms.clone();
                let name = room.clone();
                futures_util::future::Either::Right(async move { rooms.ask(&name, msg).await? })
            }
        };
        reply
            .into_actor(self)
            .map(move |outcome, act, ctx| {
                if let Err(e) = outcome {
                    act.room_error(ctx, e.into(), &room);
                }
            })
            .spawn(ctx);
    }

    fn broadcast_room(&mut self, room: Arc<str>, frame: &Value, ctx: &mut WebsocketContext<Self>) -> Result<(), PlazaError> {
        self.core.state.plaza.rooms.rules.check(RoomAction::Broadcast, &self.core.auth, &room)?;
        let event = event_name(frame)?;
        let data = frame.get("data").cloned().unwrap_or(Value::Null);
        let from = sender(&self.core.auth);
        self.tell_room(room, Broadcast { from, event, data }, ctx);
        Ok(())
    }

    fn room_presence(&mut self, room: Arc<str>, frame: &Value, ctx: &mut WebsocketContext<Self>) -> Result<(), PlazaError> {
        let presence = frame.get("presence").cloned().ok_or_else(|| PlazaError::Validation("\"presence\" is required".into()))?;
        let user = match self.rooms.joined.get(&room) {
            Some(r) => r.user.clone(),
            None => member(&self.core.auth, frame)?,
        };
        self.tell_room(room, SetPresence { user, presence }, ctx);
        Ok(())
    }

    fn patch_room(&mut self, room: Arc<str>, frame: &Value, ctx: &mut WebsocketContext<Self>) -> Result<(), PlazaError> {
        self.core.state.plaza.rooms.rules.check(RoomAction::State, &self.core.auth, &room)?;
        let patch = frame.get("patch").cloned().ok_or_else(|| PlazaError::Validation("\"patch\" is required".into()))?;
        let msg = PatchState { from: sender(&self.core.auth), patch, reference: frame.get("ref").cloned() };
        self.tell_room(room, msg, ctx);
        Ok(())
    }
}

impl Handler<RoomFrame> for Connection {
    type Result = ();

    fn handle(&mut self, msg: RoomFrame, ctx: &mut WebsocketContext<Self>) {
        live::send_shared(self, ctx, SharedFrame::json("room", &msg.json));
    }
}

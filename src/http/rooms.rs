//! Rooms over HTTP: join, leave, broadcast, presence and state for members without a socket (and
//! for servers acting for the app with the admin token), the room list and one room. Each
//! handler checks the caller and the room rules, then sends one message to the room.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use futures_util::future::join_all;
use plaza_actors::model::manifest::validate_room_name;
use plaza_actors::model::policy::{AuthContext, RoomAction};
use plaza_actors::rooms::{
    Broadcast, Count, Describe, Join, Leave, PatchState, Resync, RoomError, RoomList, SetPresence, Snapshot, Via, ViaId,
};
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::resource;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Member};
use crate::AppState;

/// Longest user id the admin may name for a member, and longest event name.
pub const MAX_MEMBER_ID_LEN: usize = 256;
pub const MAX_EVENT_NAME_LEN: usize = 256;

pub fn routes(cfg: &mut web::ServiceConfig) {
    // One resource for `/api/rooms/{x}`: GET describes room x, POST runs action x (join, leave,
    // ...), so a room may be called "join" and still be read.
    cfg.service(resource("/api/rooms").route(web::get().to(list)))
        .service(resource("/api/rooms/{room}").route(web::get().to(describe)).route(web::post().to(action)));
}

async fn action(state: web::Data<AppState>, path: web::Path<String>, Member(auth): Member, JsonBody(body): JsonBody) -> ApiResult {
    let auth = auth.ctx;
    if !matches!(path.as_str(), "join" | "leave" | "broadcast" | "presence" | "state") {
        return Err(ApiError::RouteNotFound(format!("POST /api/rooms/{}", path.as_str())));
    }
    let room = room_name(&body)?;
    let reply = match path.as_str() {
        "join" => join(&state, &auth, room, &body).await?,
        "leave" => leave(&state, &auth, room, &body).await?,
        "broadcast" => broadcast(&state, &auth, room, &body).await?,
        "presence" => presence(&state, &auth, room, &body).await?,
        "state" => patch(&state, &auth, room, &body).await?,
        other => return Err(ApiError::RouteNotFound(format!("POST /api/rooms/{other}"))),
    };
    Ok(HttpResponse::Ok().json(reply))
}

fn room_name(body: &Value) -> Result<&str, PlazaError> {
    let name = body.get("room").and_then(Value::as_str).ok_or_else(|| PlazaError::Validation("\"room\" is required".into()))?;
    validate_room_name(name)?;
    Ok(name)
}

/// The member a request is about: the session's user, or for the admin the `user_id` it names.
pub fn member(auth: &AuthContext, body: &Value) -> Result<Arc<str>, PlazaError> {
    let named = match body.get("user_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_MEMBER_ID_LEN => Some(s.as_str()),
        Some(_) => return Err(PlazaError::Validation(format!("\"user_id\" must be a string of 1 to {MAX_MEMBER_ID_LEN} characters"))),
    };
    match (auth.admin, named, auth.user_id.as_deref()) {
        (true, Some(user), _) => Ok(user.into()),
        (true, None, _) => Err(PlazaError::Validation("the admin acts for a member: give \"user_id\"".into())),
        (false, Some(user), Some(own)) if user != own => {
            Err(PlazaError::Forbidden("only the admin may act for another user".into()))
        }
        (false, _, Some(own)) => Ok(own.into()),
        (false, _, None) => Err(PlazaError::Forbidden("rooms need a session or the admin token".into())),
    }
}

/// Who an event is from: the session's user (who must be a member), or nobody for the admin.
pub fn sender(auth: &AuthContext) -> Option<Arc<str>> {
    if auth.admin {
        None
    } else {
        auth.user_id.as_deref().map(Into::into)
    }
}

fn members_json(snapshot: &Snapshot) -> Value {
    snapshot.members.iter().map(|(user, presence)| json!({"user_id": &**user, "presence": presence})).collect()
}

async fn join(state: &AppState, auth: &AuthContext, room: &str, body: &Value) -> Result<Value, ApiError> {
    let rooms = &state.plaza.rooms;
    rooms.rules.check(RoomAction::Join, auth, room)?;
    let user = member(auth, body)?;
    let join = Join { user, presence: body.get("presence").cloned(), via: Via::Http, resume: None };
    let joined = rooms.join(room, join).await?;
    let s = joined.snapshot.ok_or_else(|| PlazaError::Internal("an HTTP join answers a snapshot".into()))?;
    Ok(json!({
        "joined": room, "epoch": &*s.epoch, "seq": s.seq, "members": members_json(&s),
        "state": s.state, "state_version": s.state_version,
    }))
}

async fn leave(state: &AppState, auth: &AuthContext, room: &str, body: &Value) -> Result<Value, ApiError> {
    let user = member(auth, body)?;
    if let Some(addr) = state.plaza.rooms.lookup(room).await? {
        // Ends the HTTP membership; the user's sockets leave over their sockets.
        addr.send(Leave { user, via: ViaId::Http }).await?;
    }
    Ok(json!({"left": room}))
}

async fn broadcast(state: &AppState, auth: &AuthContext, room: &str, body: &Value) -> Result<Value, ApiError> {
    let rooms = &state.plaza.rooms;
    rooms.rules.check(RoomAction::Broadcast, auth, room)?;
    let event = event_name(body)?;
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    let sent = rooms.ask(room, Broadcast { from: sender(auth), event, data }).await??;
    Ok(json!({"delivered": sent.delivered, "seq": sent.seq}))
}

pub fn event_name(body: &Value) -> Result<String, PlazaError> {
    match body.get("event") {
        Some(Value::String(e)) if !e.is_empty() && e.len() <= MAX_EVENT_NAME_LEN => Ok(e.clone()),
        _ => Err(PlazaError::Validation(format!("\"event\" must be a string of 1 to {MAX_EVENT_NAME_LEN} characters"))),
    }
}

async fn presence(state: &AppState, auth: &AuthContext, room: &str, body: &Value) -> Result<Value, ApiError> {
    let user = member(auth, body)?;
    let presence = body.get("presence").cloned().ok_or_else(|| PlazaError::Validation("\"presence\" is required".into()))?;
    state.plaza.rooms.ask(room, SetPresence { user, presence }).await??;
    Ok(json!({"ok": true}))
}

async fn patch(state: &AppState, auth: &AuthContext, room: &str, body: &Value) -> Result<Value, ApiError> {
    let rooms = &state.plaza.rooms;
    rooms.rules.check(RoomAction::State, auth, room)?;
    let patch = body.get("patch").cloned().ok_or_else(|| PlazaError::Validation("\"patch\" is required".into()))?;
    let msg = PatchState { from: sender(auth), patch, reference: None };
    // A persisting room exists while it has saved state: a patch starts it (it loads first).
    let version = if rooms.rules.persists(room) { rooms.ask_started(room, msg).await?? } else { rooms.ask(room, msg).await?? };
    Ok(json!({"state_version": version}))
}

/// Running rooms the caller may join, with their member counts.
async fn list(state: web::Data<AppState>, Member(auth): Member) -> ApiResult {
    let rooms = &state.plaza.rooms;
    let running = rooms.registry.send(RoomList).await?;
    let visible: Vec<_> = running.into_iter().filter(|(name, _)| rooms.rules.allows(RoomAction::Join, &auth.ctx, name)).collect();
    let counts = join_all(visible.iter().map(|(_, addr)| addr.send(Count))).await;
    let list: Vec<Value> = visible
        .iter()
        .zip(counts)
        // A room that stopped meanwhile is left out.
        .filter_map(|((name, _), count)| count.ok().map(|n| json!({"name": &**name, "members": n})))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"rooms": list})))
}

/// One room: members, seq, state; with `?since=S&epoch=E` also the buffered events after S (as
/// a socket's resume would replay them). A persisting room that is not running answers its
/// saved state.
async fn describe(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HashMap<String, String>>,
    Member(auth): Member,
) -> ApiResult {
    let room = path.into_inner();
    validate_room_name(&room)?;
    let rooms = &state.plaza.rooms;
    rooms.rules.check(RoomAction::Join, &auth.ctx, &room)?;
    let since = match (query.get("since"), query.get("epoch")) {
        (None, _) => None,
        (Some(s), Some(epoch)) => {
            let seq = s.parse::<u64>().map_err(|_| PlazaError::Validation("since must be a room seq (an integer)".into()))?;
            Some((seq, epoch.clone()))
        }
        (Some(_), None) => return Err(PlazaError::Validation("since needs the epoch it belongs to".into()).into()),
    };
    let not_found = || PlazaError::NotFound(format!("room '{room}' does not exist"));
    if let Some(addr) = rooms.lookup(&room).await? {
        if let Ok(described) = addr.send(Describe { since: since.clone() }).await {
            let s = described?;
            let mut body = json!({
                "name": &*s.name, "epoch": &*s.epoch, "seq": s.seq, "members": members_json(&s),
                "state": s.state, "state_version": s.state_version,
            });
            if query.contains_key("since") {
                let events: Vec<Value> = s.events.iter().map(|e| serde_json::from_str(e).unwrap_or(Value::Null)).collect();
                body["events"] = Value::Array(events);
            }
            return Ok(HttpResponse::Ok().json(body));
        }
    }
    if !rooms.rules.persists(&room) {
        return Err(not_found().into());
    }
    let name = room.clone();
    let (saved, version) = state.read(move |r| r.room_state(&name)).await??.ok_or_else(not_found)?;
    if let Some((seq, epoch)) = since {
        // The life of the room that `epoch` names has ended: nothing of it can be replayed.
        let resync = Resync { epoch: "".into(), seq: 0, state: saved, state_version: version };
        let reason = format!("room '{room}' is not running (since {seq} of epoch {epoch} cannot be resumed)");
        return Err(PlazaError::from(RoomError::ResyncRequired { reason, resync: Box::new(resync) }).into());
    }
    Ok(HttpResponse::Ok().json(json!({
        "name": room, "epoch": null, "seq": 0, "members": [], "state": saved, "state_version": version,
    })))
}

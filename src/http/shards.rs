//! Shards over HTTP: list, start (admin), inspect, input (session), stop (admin), and the SSE
//! stream `GET /api/shards/:id/connect`, which delivers the same snapshot frames as `/ws` on
//! the same stream core (`crate::live`), with the same auth.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use plaza_actors::shards::shard::{Snapshot, Subscribe};
use plaza_actors::shards::{Published, Shard};
use plaza_actors::PlazaError;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::resource;
use crate::error::ApiResult;
use crate::extract::{Admin, JsonBody, Member};
use crate::middleware::caller::caller_ip;
use crate::live::shards::{self as live_shards, ShardStream, ShardSubs};
use crate::live::sse::{self, SseChannel, KEEPALIVE_INTERVAL};
use crate::live::{self, Backlogged, Closing, Frame, Sink, StreamCore, StreamSlot};
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/shards").route(web::get().to(list)).route(web::post().to(create)))
        .service(resource("/api/shards/{id}").route(web::get().to(show)).route(web::delete().to(stop)))
        .service(resource("/api/shards/{id}/input").route(web::post().to(input)))
        .service(resource("/api/shards/{id}/connect").route(web::get().to(connect)));
}

async fn list(state: web::Data<AppState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(json!({"shards": state.plaza.shards.list().await})))
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

/// `{"name","sim","tick_hz?","config?","persist?"}` → 201 with the shard's row.
async fn create(_: Admin, state: web::Data<AppState>, JsonBody(body): JsonBody) -> ApiResult {
    if !body.is_object() {
        return Err(PlazaError::Validation("expected {\"name\",\"sim\",\"tick_hz?\",\"config?\",\"persist?\"}".into()).into());
    }
    let text = |k: &str| field(&body, k).and_then(Value::as_str).ok_or_else(|| PlazaError::Validation(format!("\"{k}\" must be a string")));
    let (name, sim) = (text("name")?, text("sim")?);
    let tick_hz = match field(&body, "tick_hz") {
        None => None,
        Some(v) => Some(v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(|| PlazaError::Validation("\"tick_hz\" must be a positive integer".into()))?),
    };
    let persist = match field(&body, "persist") {
        None => false,
        Some(v) => v.as_bool().ok_or_else(|| PlazaError::Validation("\"persist\" must be true or false".into()))?,
    };
    let shards = &state.plaza.shards;
    let spec = shards.spec(name, sim, tick_hz, field(&body, "config").cloned(), persist)?;
    let tick_hz = spec.tick_hz;
    shards.start(spec).await?;
    Ok(HttpResponse::Created().json(json!({"name": name, "sim": sim, "tick_hz": tick_hz, "persist": persist})))
}

/// `{"name","sim","tick","state"}`: the last published state.
async fn show(state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let snapshot = state.plaza.shards.find(&id)?.send(Snapshot).await?;
    Ok(HttpResponse::Ok().json(json!({"name": snapshot.name, "sim": snapshot.sim, "tick": snapshot.tick, "state": &*snapshot.state})))
}

/// Stops a shard; a persisting one stores its last snapshot first.
async fn stop(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    state.plaza.shards.stop(&id, true).await?;
    Ok(HttpResponse::Ok().json(json!({"stopped": id.as_str()})))
}

/// `{"input"}` from the session's user → `{"queued":true,"tick"}` (the tick that applies it).
async fn input(Member(auth): Member, state: web::Data<AppState>, id: web::Path<String>, JsonBody(mut body): JsonBody) -> ApiResult {
    let Some(player) = auth.ctx.user_id.as_deref() else {
        return Err(PlazaError::Forbidden("shard input needs a session: the player is the session's user".into()).into());
    };
    let input = body.get_mut("input").map(Value::take).filter(|v| !v.is_null());
    let input = input.ok_or_else(|| PlazaError::Validation("expected {\"input\": ...}".into()))?;
    let tick = state.plaza.shards.input(&id, player.into(), input)?.await??;
    Ok(HttpResponse::Ok().json(json!({"queued": true, "tick": tick})))
}

/// SSE: `event: snapshot` (or `delta`) frames, the current state first; `event: error` with
/// `SHARD_CRASHED` / `SHARD_STOPPED` ends the stream. Credentials as for any request, or
/// `?token=`. The subscription is made before the response starts, so its refusals (unknown
/// shard, a full one, no session) are plain HTTP errors.
async fn connect(req: HttpRequest, state: web::Data<AppState>, id: web::Path<String>, query: web::Query<HashMap<String, String>>) -> ApiResult {
    let auth = sse::caller(&req, &state, &query).await?;
    let player = live_shards::player(&auth.ctx)?;
    let addr = state.plaza.shards.find(&id)?;
    let slot = StreamSlot::reserve(&state, caller_ip(&req), &auth.ctx).await?;
    let updates = addr.send(Subscribe { subscriber: slot.id(), player }).await??;
    let (channel, response) = SseChannel::open(state.config.ws_outbound_max);
    let core = StreamCore::new(state.clone(), auth.ctx, slot);
    ShardSse { core, channel, shards: ShardSubs::default(), opening: Some((id.as_str().into(), addr, updates)) }.start();
    Ok(response)
}

type Opening = (Arc<str>, Addr<Shard>, watch::Receiver<Arc<Published>>);

struct ShardSse {
    core: StreamCore,
    channel: SseChannel,
    shards: ShardSubs,
    opening: Option<Opening>,
}

impl Sink for ShardSse {
    fn core(&mut self) -> &mut StreamCore {
        &mut self.core
    }

    /// A full queue (the last slot is kept for notices) skips the frame: for shards, the next
    /// tick brings the reader up to date.
    fn write(&mut self, frame: Frame, ctx: &mut Context<Self>) -> Result<(), Backlogged> {
        if !self.channel.write(&frame)? {
            ctx.stop();
        }
        Ok(())
    }

    fn close(&mut self, _: Closing, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

crate::stream_handlers!(ShardSse);

impl ShardStream for ShardSse {
    fn shard_subs(&mut self) -> &mut ShardSubs {
        &mut self.shards
    }

    fn shard_ended(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Actor for ShardSse {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.core.outbound_max());
        live::started(self, ctx);
        if let Some((name, addr, updates)) = self.opening.take() {
            live_shards::attach(self, ctx, name, addr, updates);
        }
        ctx.run_interval(KEEPALIVE_INTERVAL, |act, ctx| {
            if !act.channel.keep_alive() {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        live::stopped(&self.core);
        live_shards::stopped(self);
    }
}

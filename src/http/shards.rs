//! Shards over HTTP: list, start (admin), inspect, input (session), stop (admin), and the SSE
//! stream `GET /api/shards/:id/connect`, which delivers the same snapshot frames as `/ws` on
//! the same stream core (`crate::live`), with the same auth.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use plaza_actors::shards::shard::{Snapshot, Subscribe};
use plaza_actors::shards::{Published, Shard};
use plaza_actors::PlazaError;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

use super::events::KEEPALIVE_INTERVAL;
use super::resource;
use crate::error::ApiResult;
use crate::extract::{Admin, Auth, JsonBody, Member};
use crate::middleware::caller::caller_ip;
use crate::live::shards::{self as live_shards, ShardStream, ShardSubs};
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
    if state.is_draining() {
        return Err(PlazaError::Unavailable("server is draining; reconnect shortly".into()).into());
    }
    let auth = match query.get("token") {
        Some(token) => Auth::resolve(&state, Some(token.clone())).await?,
        None => Auth::extract(&req).await?,
    };
    let player = live_shards::player(&auth.ctx)?;
    let addr = state.plaza.shards.find(&id)?;
    let slot = StreamSlot::reserve(&state, caller_ip(&req), &auth.ctx).await?;
    let updates = addr.send(Subscribe { subscriber: slot.id(), player }).await??;
    let (tx, rx) = mpsc::channel(state.config.ws_outbound_max + 1);
    let core = StreamCore::new(state.clone(), auth.ctx, slot);
    ShardSse { core, tx, shards: ShardSubs::default(), opening: Some((id.as_str().into(), addr, updates)) }.start();
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

type Opening = (Arc<str>, Addr<Shard>, watch::Receiver<Arc<Published>>);

struct ShardSse {
    core: StreamCore,
    tx: mpsc::Sender<Bytes>,
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
        let notice = frame.kind == "error";
        if self.tx.capacity() <= 1 && !notice {
            return Err(Backlogged);
        }
        let event = Bytes::from(format!("event: {}\ndata: {}\n\n", frame.kind, frame.text));
        if self.tx.try_send(event).is_err() && !notice {
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
            if act.tx.is_closed() {
                ctx.stop();
            } else {
                let _ = act.tx.try_send(Bytes::from_static(b": keepalive\n\n"));
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        live::stopped(&self.core);
        live_shards::stopped(self);
    }
}

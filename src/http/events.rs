//! Server-Sent Events: `GET /api/events?entity=&filter=&since=` streams the same frames as `/ws`
//! (change events carry `id: seq`, so `Last-Event-ID` resumes), under the same auth and
//! policies, on the same stream core (`crate::live`). One `SseStream` actor per stream writes
//! into a bounded channel that the response body drains.

use std::collections::HashMap;

use actix::prelude::*;
use actix_web::{web, HttpRequest};
use plaza_actors::PlazaError;

use super::resource;
use crate::error::ApiResult;
use crate::middleware::caller::caller_ip;
use crate::live::sse::{self, SseChannel, KEEPALIVE_INTERVAL};
use crate::live::{self, Backlogged, Closing, Frame, Opened, Sink, StreamCore, StreamSlot};
use crate::AppState;

const SUB_ID: &str = "events";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/events").route(web::get().to(events)));
}

/// Credentials as for any request, or `?token=` (browsers' EventSource cannot set headers).
/// The subscription is opened before the response starts, so its errors (unknown entity, a
/// cursor to resync) are plain HTTP errors.
async fn events(req: HttpRequest, state: web::Data<AppState>, query: web::Query<HashMap<String, String>>) -> ApiResult {
    let auth = sse::caller(&req, &state, &query).await?;
    let entity = query.get("entity").ok_or_else(|| PlazaError::Validation("?entity= is required".into()))?;
    let filter = live::filter_param(&query)?;
    let since = query
        .get("since")
        .map(String::as_str)
        .or_else(|| req.headers().get("Last-Event-ID").and_then(|v| v.to_str().ok()))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| PlazaError::Validation(format!("since must be an integer seq, got '{s}'"))))
        .transpose()?;
    let slot = StreamSlot::reserve(&state, caller_ip(&req), &auth.ctx).await?;
    let mut core = StreamCore::new(state.clone(), auth.ctx, slot);
    let pending = core.prepare(SUB_ID.into(), entity, filter.as_ref(), since)?;
    let (channel, response) = SseChannel::open(state.config.ws_outbound_max);
    let actor = SseStream { core, channel }.start();
    match pending.open(actor.clone()).await {
        Ok(opened) => actor.do_send(Begin(opened)),
        Err(e) => {
            actor.do_send(Close);
            return Err(e);
        }
    }
    Ok(response)
}

struct SseStream {
    core: StreamCore,
    channel: SseChannel,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Begin(Opened);

#[derive(Message)]
#[rtype(result = "()")]
struct Close;

impl Sink for SseStream {
    fn core(&mut self) -> &mut StreamCore {
        &mut self.core
    }

    fn write(&mut self, frame: Frame, ctx: &mut Context<Self>) -> Result<(), Backlogged> {
        if !self.channel.write(&frame)? {
            ctx.stop();
        }
        Ok(())
    }

    fn close(&mut self, _: Closing, ctx: &mut Context<Self>) {
        // The body ends once the events already queued are read.
        ctx.stop();
    }
}

crate::stream_handlers!(SseStream);

impl Actor for SseStream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.core.outbound_max());
        live::started(self, ctx);
        ctx.run_interval(KEEPALIVE_INTERVAL, |act, ctx| {
            if !act.channel.keep_alive() {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        live::stopped(&self.core);
    }
}

impl Handler<Begin> for SseStream {
    type Result = ();
    fn handle(&mut self, Begin(opened): Begin, ctx: &mut Context<Self>) {
        live::begin(self, ctx, opened);
    }
}

impl Handler<Close> for SseStream {
    type Result = ();
    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

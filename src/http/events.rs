//! Server-Sent Events: `GET /api/events?entity=&filter=&since=` streams the same frames as `/ws`
//! (change events carry `id: seq`, so `Last-Event-ID` resumes), under the same auth and
//! policies, on the same stream core (`crate::live`). One `SseStream` actor per stream writes
//! into a bounded channel that the response body drains.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use actix::prelude::*;
use actix_web::web::Bytes;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use plaza_actors::PlazaError;
use tokio::sync::mpsc;

use super::resource;
use crate::error::ApiResult;
use crate::extract::Auth;
use crate::middleware::caller::caller_ip;
use crate::live::{self, Backlogged, Closing, Frame, Opened, Sink, StreamCore, StreamSlot};
use crate::AppState;

/// A comment line this often keeps proxies from closing an idle stream.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const SUB_ID: &str = "events";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/events").route(web::get().to(events)));
}

/// Credentials as for any request, or `?token=` (browsers' EventSource cannot set headers).
/// The subscription is opened before the response starts, so its errors (unknown entity, a
/// cursor to resync) are plain HTTP errors.
async fn events(req: HttpRequest, state: web::Data<AppState>, query: web::Query<HashMap<String, String>>) -> ApiResult {
    if state.is_draining() {
        return Err(PlazaError::Unavailable("server is draining; reconnect shortly".into()).into());
    }
    let auth = match query.get("token") {
        Some(token) => Auth::resolve(&state, Some(token.clone())).await?,
        None => Auth::extract(&req).await?,
    };
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
    // One slot beyond the bound is kept for the closing notice.
    let (tx, rx) = mpsc::channel(state.config.ws_outbound_max + 1);
    let actor = SseStream { core, tx }.start();
    match pending.open(actor.clone()).await {
        Ok(opened) => actor.do_send(Begin(opened)),
        Err(e) => {
            actor.do_send(Close);
            return Err(e);
        }
    }
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body))
}

struct SseStream {
    core: StreamCore,
    tx: mpsc::Sender<Bytes>,
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

    /// One event; a full queue means the reader fell behind (the last slot is kept for the
    /// closing notice), a closed one that it left.
    fn write(&mut self, frame: Frame, ctx: &mut Context<Self>) -> Result<(), Backlogged> {
        let notice = frame.kind == "error";
        if self.tx.capacity() <= 1 && !notice {
            return Err(Backlogged);
        }
        let id = frame.seq.map(|seq| format!("id: {seq}\n")).unwrap_or_default();
        let event = Bytes::from(format!("{id}event: {}\ndata: {}\n\n", frame.kind, frame.text));
        if self.tx.try_send(event).is_err() && !notice {
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
            if act.tx.is_closed() {
                ctx.stop();
            } else {
                let _ = act.tx.try_send(Bytes::from_static(b": keepalive\n\n"));
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

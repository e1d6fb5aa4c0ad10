//! Server-Sent Events: `GET /api/events?entity=&filter=&since=` streams the same change frames
//! as `/ws` (with `id: seq`, so `Last-Event-ID` resumes), under the same auth and policies. One
//! `SseStream` actor per stream feeds a bounded channel that the response body drains.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use plaza_actors::model::change::Change;
use plaza_actors::changelog::{Deliver, SlowConsumer, Subscribe, Unsubscribe};
use plaza_actors::PlazaError;
use serde_json::json;
use tokio::sync::mpsc;

use super::resource;
use crate::error::{ApiError, ApiResult};
use crate::extract::{credential, Auth};
use crate::ws::stream::{self, Gate, StreamSlot};
use crate::AppState;

/// A comment line this often keeps proxies from closing an idle stream.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
const SUB_ID: &str = "events";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/events").route(web::get().to(events)));
}

/// Credentials as for any request, or `?token=` (browsers' EventSource cannot set headers).
async fn events(req: HttpRequest, state: web::Data<AppState>, query: web::Query<HashMap<String, String>>) -> ApiResult {
    if state.is_draining() {
        return Err(PlazaError::Unavailable("server is draining; reconnect shortly".into()).into());
    }
    let auth = Auth::resolve(&state, query.get("token").cloned().or_else(|| credential(&req))).await?;
    let entity = query.get("entity").ok_or_else(|| PlazaError::Validation("?entity= is required".into()))?;
    let filter = crate::ws::filter_param(&query)?;
    let since = query
        .get("since")
        .map(String::as_str)
        .or_else(|| req.headers().get("Last-Event-ID").and_then(|v| v.to_str().ok()))
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| PlazaError::Validation(format!("since must be an integer seq, got '{s}'"))))
        .transpose()?;
    let sub = stream::subscription(&state, entity, filter.as_ref(), &auth.ctx)?;
    let slot = StreamSlot::acquire(&state, req.peer_addr().map(|a| a.ip()))?;
    // One slot beyond the bound is kept for the SLOW_CONSUMER notice.
    let (tx, rx) = mpsc::channel(state.config.ws_outbound_max + 1);
    let id = state.next_stream_id.fetch_add(1, Ordering::Relaxed);
    let limit = state.config.ws_outbound_max;
    let actor = SseStream { id, state: state.clone(), tx, gate: Gate::new(limit), _slot: slot }.start();
    let request = Subscribe {
        subscriber: id,
        id: SUB_ID.into(),
        sub: sub.clone(),
        since,
        deliver: actor.clone().recipient(),
        kick: actor.clone().recipient(),
    };
    let begun = async {
        let subscribed = state.plaza.changelog.send(request).await??;
        let events = stream::replay(&state, &sub, subscribed.replay).await?;
        Ok::<_, ApiError>((since.unwrap_or(subscribed.seq), subscribed.seq, events))
    }
    .await;
    match begun {
        Ok((start, seq, events)) => actor.do_send(Begin { start, seq, events }),
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
    id: u64,
    state: web::Data<AppState>,
    tx: mpsc::Sender<Bytes>,
    gate: Gate,
    _slot: StreamSlot,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Begin {
    start: i64,
    seq: i64,
    events: Vec<Arc<Change>>,
}

#[derive(Message)]
#[rtype(result = "()")]
struct Close;

fn change_event(change: &Change, json: &str) -> Bytes {
    Bytes::from(format!("id: {}\nevent: change\ndata: {}\n\n", change.seq, stream::change_frame(SUB_ID, json)))
}

impl SseStream {
    /// Queues one event; a full queue means the reader fell behind, a closed one that it left.
    fn emit(&mut self, bytes: Bytes, ctx: &mut Context<Self>) {
        if self.tx.capacity() <= 1 {
            return self.slow_consumer(ctx);
        }
        match self.tx.try_send(bytes) {
            Ok(()) => self.state.metrics.frames_out.inc(),
            Err(_) => ctx.stop(),
        }
    }

    fn slow_consumer(&mut self, ctx: &mut Context<Self>) {
        self.state.metrics.slow_consumers.inc();
        let notice = json!({"type": "error", "code": "SLOW_CONSUMER", "message": "this stream fell too far behind and is closed; reconnect with Last-Event-ID"});
        let _ = self.tx.try_send(Bytes::from(format!("event: error\ndata: {notice}\n\n")));
        ctx.stop();
    }
}

impl Actor for SseStream {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(self.state.config.ws_outbound_max);
        ctx.run_interval(KEEPALIVE_INTERVAL, |act, ctx| {
            if act.tx.is_closed() {
                ctx.stop();
            } else {
                let _ = act.tx.try_send(Bytes::from_static(b": keepalive\n\n"));
            }
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.state.plaza.changelog.do_send(Unsubscribe { subscriber: self.id, id: None });
    }
}

impl Handler<Begin> for SseStream {
    type Result = ();
    fn handle(&mut self, msg: Begin, ctx: &mut Context<Self>) {
        let hello = json!({"type": "subscribed", "id": SUB_ID, "seq": msg.start});
        self.emit(Bytes::from(format!("event: subscribed\ndata: {hello}\n\n")), ctx);
        for change in &msg.events {
            let json = serde_json::to_string(&**change).unwrap_or_default();
            self.emit(change_event(change, &json), ctx);
        }
        for d in self.gate.open(msg.seq) {
            self.state.metrics.fanout_latency.observe(d.committed_at.elapsed().as_secs_f64());
            self.emit(change_event(&d.change, &d.json), ctx);
        }
    }
}

impl Handler<Deliver> for SseStream {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        match self.gate.admit(msg) {
            Ok(Some(d)) => {
                self.state.metrics.fanout_latency.observe(d.committed_at.elapsed().as_secs_f64());
                self.emit(change_event(&d.change, &d.json), ctx);
            }
            Ok(None) => {}
            Err(stream::Overflow) => self.slow_consumer(ctx),
        }
    }
}

impl Handler<SlowConsumer> for SseStream {
    type Result = ();
    fn handle(&mut self, _: SlowConsumer, ctx: &mut Context<Self>) {
        self.slow_consumer(ctx);
    }
}

impl Handler<Close> for SseStream {
    type Result = ();
    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

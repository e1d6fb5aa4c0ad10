//! One `Connection` actor per WebSocket: parses client frames, owns the socket's live
//! subscriptions, and writes change frames. Its mailbox is the socket's bounded outbound queue:
//! the ChangeLog offers events with `try_send`, and a full mailbox (a client not reading) gets
//! `SLOW_CONSUMER` and is closed, while everyone else carries on.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::web;
use actix_web_actors::ws::{self, CloseCode, CloseReason, WebsocketContext};
use plaza_actors::changelog::{Deliver, SlowConsumer, Subscribe, Unsubscribe};
use plaza_actors::model::policy::AuthContext;
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::stream::{self, Gate, StreamSlot};
use crate::error::ApiError;
use crate::AppState;

pub struct Connection {
    id: u64,
    state: web::Data<AppState>,
    auth: AuthContext,
    subs: HashMap<Arc<str>, Gate>,
    last_seen: Instant,
    _slot: StreamSlot,
}

impl Connection {
    pub fn new(state: web::Data<AppState>, auth: AuthContext, slot: StreamSlot) -> Self {
        let id = state.next_stream_id.fetch_add(1, Ordering::Relaxed);
        Connection { id, state, auth, subs: HashMap::new(), last_seen: Instant::now(), _slot: slot }
    }

    fn send(&self, ctx: &mut WebsocketContext<Self>, frame: &Value) {
        self.state.metrics.frames_out.inc();
        ctx.text(frame.to_string());
    }

    fn error(&self, ctx: &mut WebsocketContext<Self>, code: &str, message: impl std::fmt::Display, reference: Option<&str>) {
        let mut frame = json!({"type": "error", "code": code, "message": message.to_string()});
        if let Some(r) = reference {
            frame["ref"] = json!(r);
        }
        self.send(ctx, &frame);
    }

    fn api_error(&self, ctx: &mut WebsocketContext<Self>, e: ApiError, reference: Option<&str>) {
        self.error(ctx, e.code(), &e, reference);
    }

    fn deliver(&self, ctx: &mut WebsocketContext<Self>, d: &Deliver) {
        self.state.metrics.frames_out.inc();
        self.state.metrics.fanout_latency.observe(d.committed_at.elapsed().as_secs_f64());
        ctx.text(stream::change_frame(&d.sub, &d.json));
    }

    fn slow_consumer(&mut self, ctx: &mut WebsocketContext<Self>) {
        self.state.metrics.slow_consumers.inc();
        self.error(ctx, "SLOW_CONSUMER", "this socket fell too far behind and is closed; reconnect and resume with since", None);
        ctx.close(Some(CloseReason { code: CloseCode::Policy, description: Some("slow consumer".into()) }));
        ctx.stop();
    }

    fn on_text(&mut self, text: &str, ctx: &mut WebsocketContext<Self>) {
        let frame: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.error(ctx, "INVALID_JSON", format!("frame is not JSON: {e}"), None),
        };
        let kind = frame.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "ping" => self.send(ctx, &json!({"type": "pong"})),
            "subscribe" => {
                if let Err(e) = self.subscribe(&frame, ctx) {
                    let reference = frame.get("id").map(|v| v.as_str().map_or(v.to_string(), String::from));
                    self.api_error(ctx, e.into(), reference.as_deref());
                }
            }
            "unsubscribe" => match stream::sub_id(frame.get("id")) {
                Ok(id) if self.subs.remove(&id).is_some() => {
                    self.state.plaza.changelog.do_send(Unsubscribe { subscriber: self.id, id: Some(id.clone()) });
                    self.send(ctx, &json!({"type": "unsubscribed", "id": &*id}));
                }
                Ok(id) => self.error(ctx, "NOT_FOUND", "no such subscription", Some(&id)),
                Err(e) => self.api_error(ctx, e.into(), None),
            },
            "join" | "leave" | "broadcast" | "presence" | "shard_subscribe" | "shard_input" | "pubsub_subscribe" => {
                self.error(ctx, "NOT_IMPLEMENTED", format!("'{kind}' is not available on this server yet"), None)
            }
            _ => self.error(ctx, "BAD_FRAME", format!("unknown frame type '{kind}'"), None),
        }
    }

    fn subscribe(&mut self, frame: &Value, ctx: &mut WebsocketContext<Self>) -> Result<(), PlazaError> {
        let id = stream::sub_id(frame.get("id"))?;
        if self.subs.contains_key(&id) {
            return Err(PlazaError::Conflict(format!("subscription '{id}' already exists")));
        }
        if self.subs.len() >= self.state.config.ws_max_subscriptions {
            return Err(PlazaError::Validation(format!(
                "at most {} subscriptions per socket",
                self.state.config.ws_max_subscriptions
            )));
        }
        let entity = frame.get("entity").and_then(Value::as_str).ok_or_else(|| PlazaError::Validation("\"entity\" is required".into()))?;
        let since = match frame.get("since") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| PlazaError::Validation("\"since\" must be an integer seq".into()))?),
        };
        let sub = stream::subscription(&self.state, entity, frame.get("filter"), &self.auth)?;
        self.subs.insert(id.clone(), Gate::new(self.state.config.ws_outbound_max));
        let addr = ctx.address();
        let request = Subscribe {
            subscriber: self.id,
            id: id.clone(),
            sub: sub.clone(),
            since,
            deliver: addr.clone().recipient(),
            kick: addr.recipient(),
        };
        let state = self.state.clone();
        async move {
            let subscribed = state.plaza.changelog.send(request).await.map_err(ApiError::from)?.map_err(ApiError::from)?;
            let events = stream::replay(&state, &sub, subscribed.replay).await?;
            Ok::<_, ApiError>((subscribed.seq, events))
        }
        .into_actor(self)
        .map(move |outcome, act, ctx| match outcome {
            Ok((seq, events)) => {
                act.send(ctx, &json!({"type": "subscribed", "id": &*id, "seq": since.unwrap_or(seq)}));
                for change in &events {
                    let json = serde_json::to_string(&**change).unwrap_or_default();
                    act.state.metrics.frames_out.inc();
                    ctx.text(stream::change_frame(&id, &json));
                }
                if let Some(gate) = act.subs.get_mut(&id) {
                    for d in gate.open(seq) {
                        act.deliver(ctx, &d);
                    }
                }
            }
            Err(e) => {
                act.subs.remove(&id);
                act.state.plaza.changelog.do_send(Unsubscribe { subscriber: act.id, id: Some(id.clone()) });
                act.api_error(ctx, e, Some(&id));
            }
        })
        .spawn(ctx);
        Ok(())
    }
}

impl Actor for Connection {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.state.config.ws_outbound_max);
        self.state.sockets.insert(self.id, ctx.address().recipient());
        let (every, timeout) = (
            Duration::from_millis(self.state.config.ws_heartbeat_ms),
            Duration::from_millis(self.state.config.ws_client_timeout_ms),
        );
        ctx.run_interval(every, move |act, ctx| {
            if act.last_seen.elapsed() > timeout {
                tracing::debug!(conn = act.id, "client silent past the timeout; dropping");
                ctx.close(Some(CloseReason { code: CloseCode::Away, description: Some("heartbeat timeout".into()) }));
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.state.sockets.remove(&self.id);
        self.state.plaza.changelog.do_send(Unsubscribe { subscriber: self.id, id: None });
    }
}

/// The server is shutting down: tell the client to reconnect (elsewhere, or after the restart).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconnect;

impl Handler<Reconnect> for Connection {
    type Result = ();
    fn handle(&mut self, _: Reconnect, ctx: &mut Self::Context) {
        self.error(ctx, "SERVER_RESTARTING", "the server is restarting; reconnect and resume with since", None);
        ctx.close(Some(CloseReason { code: CloseCode::Restart, description: Some("server restarting".into()) }));
        ctx.stop();
    }
}

impl Handler<Deliver> for Connection {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let Some(gate) = self.subs.get_mut(&msg.sub) else { return };
        match gate.admit(msg) {
            Ok(Some(d)) => self.deliver(ctx, &d),
            Ok(None) => {}
            Err(stream::Overflow) => self.slow_consumer(ctx),
        }
    }
}

impl Handler<SlowConsumer> for Connection {
    type Result = ();
    fn handle(&mut self, _: SlowConsumer, ctx: &mut Self::Context) {
        self.slow_consumer(ctx);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Connection {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match item {
            Ok(ws::Message::Text(text)) => {
                self.state.metrics.frames_in.inc();
                self.on_text(&text, ctx);
            }
            Ok(ws::Message::Ping(payload)) => ctx.pong(&payload),
            Ok(ws::Message::Pong(_)) | Ok(ws::Message::Nop) => {}
            Ok(ws::Message::Binary(_)) | Ok(ws::Message::Continuation(_)) => {
                self.error(ctx, "BAD_FRAME", "only JSON text frames are accepted", None);
            }
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(ws::ProtocolError::Overflow) => {
                let limit = self.state.config.ws_max_frame_bytes;
                self.error(ctx, "FRAME_TOO_LARGE", format!("frames are limited to {limit} bytes"), None);
                ctx.close(Some(CloseReason { code: CloseCode::Size, description: Some("frame too large".into()) }));
                ctx.stop();
            }
            Err(e) => {
                tracing::debug!(conn = self.id, error = %e, "websocket protocol error");
                ctx.close(Some(CloseReason { code: CloseCode::Protocol, description: None }));
                ctx.stop();
            }
        }
    }
}

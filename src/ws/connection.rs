//! One `Connection` actor per WebSocket: parses client frames and writes frames as text. Its
//! mailbox is the socket's bounded outbound queue: the fan-out offers events with `try_send`,
//! and a full mailbox (a client not reading) gets `SLOW_CONSUMER` and is closed, while everyone
//! else carries on. Subscriptions, replay and notices are the stream core's (`crate::live`);
//! room frames and the rooms this socket is in are in `rooms`.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web_actors::ws::{self, CloseCode, CloseReason, WebsocketContext};
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::live::{self, Backlogged, Closing, Frame, SharedFrame, Sink, StreamCore};

mod rooms;

pub struct Connection {
    core: StreamCore,
    last_seen: Instant,
    rooms: rooms::SocketRooms,
    shards: live::shards::ShardSubs,
}

impl Connection {
    pub fn new(core: StreamCore) -> Self {
        Connection { core, last_seen: Instant::now(), rooms: Default::default(), shards: Default::default() }
    }

    fn error(&mut self, ctx: &mut WebsocketContext<Self>, code: &str, message: impl std::fmt::Display, reference: Option<&str>) {
        live::send(self, ctx, Frame::error(code, message, reference));
    }

    fn api_error(&mut self, ctx: &mut WebsocketContext<Self>, e: ApiError, reference: Option<&str>) {
        self.error(ctx, e.code(), &e, reference);
    }

    fn on_text(&mut self, text: &str, ctx: &mut WebsocketContext<Self>) {
        let frame: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.error(ctx, "INVALID_JSON", format!("frame is not JSON: {e}"), None),
        };
        let kind = frame.get("type").and_then(Value::as_str).unwrap_or_default();
        match kind {
            "ping" => live::send(self, ctx, Frame::json("pong", &json!({"type": "pong"}))),
            "subscribe" => {
                if let Err(e) = self.subscribe(&frame, ctx) {
                    let reference = frame.get("id").map(|v| v.as_str().map_or(v.to_string(), String::from));
                    self.api_error(ctx, e.into(), reference.as_deref());
                }
            }
            "unsubscribe" => match live::sub_id(frame.get("id")) {
                Ok(id) if self.core.unsubscribe(&id) => {
                    live::send(self, ctx, Frame::json("unsubscribed", &json!({"type": "unsubscribed", "id": &*id})));
                }
                Ok(id) => self.error(ctx, "NOT_FOUND", "no such subscription", Some(&id)),
                Err(e) => self.api_error(ctx, e.into(), None),
            },
            "join" | "leave" | "broadcast" | "presence" | "state_patch" => self.on_room_frame(kind, &frame, ctx),
            "shard_subscribe" | "shard_unsubscribe" | "shard_input" => {
                let kind = kind.to_owned();
                self.on_shard_frame(&kind, frame, ctx)
            }
            "pubsub_subscribe" | "pubsub_unsubscribe" => super::pubsub::on_frame(self, kind, &frame, ctx),
            _ => self.error(ctx, "BAD_FRAME", format!("unknown frame type '{kind}'"), None),
        }
    }

    fn on_shard_frame(&mut self, kind: &str, mut frame: Value, ctx: &mut WebsocketContext<Self>) {
        let shard = match live::shards::shard_name(&frame) {
            Ok(s) => s.to_string(),
            Err(e) => return self.api_error(ctx, e.into(), None),
        };
        match kind {
            "shard_subscribe" => live::shards::subscribe(self, ctx, &shard),
            "shard_unsubscribe" => live::shards::unsubscribe(self, ctx, &shard),
            _ => match frame.get_mut("input").map(Value::take) {
                Some(input) if !input.is_null() => live::shards::input(self, ctx, &shard, input),
                _ => self.api_error(ctx, PlazaError::Validation("\"input\" is required".into()).into(), Some(&shard)),
            },
        }
    }

    fn subscribe(&mut self, frame: &Value, ctx: &mut WebsocketContext<Self>) -> Result<(), PlazaError> {
        let id = live::sub_id(frame.get("id"))?;
        let entity = frame.get("entity").and_then(Value::as_str).ok_or_else(|| PlazaError::Validation("\"entity\" is required".into()))?;
        let since = match frame.get("since") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_i64().ok_or_else(|| PlazaError::Validation("\"since\" must be an integer seq".into()))?),
        };
        let pending = self.core.prepare(id.clone(), entity, frame.get("filter"), since)?;
        pending
            .open(ctx.address())
            .into_actor(self)
            .map(move |outcome, act, ctx| match outcome {
                Ok(opened) => live::begin(act, ctx, opened),
                Err(e) => live::abandon(act, ctx, &id, e),
            })
            .spawn(ctx);
        Ok(())
    }
}

impl Sink for Connection {
    fn core(&mut self) -> &mut StreamCore {
        &mut self.core
    }

    fn write(&mut self, frame: Frame, ctx: &mut WebsocketContext<Self>) -> Result<(), Backlogged> {
        ctx.text(frame.text);
        Ok(())
    }

    fn write_shared(&mut self, frame: SharedFrame, ctx: &mut WebsocketContext<Self>) -> Result<(), Backlogged> {
        ctx.text(frame.text);
        Ok(())
    }

    fn close(&mut self, why: Closing, ctx: &mut WebsocketContext<Self>) {
        let (code, description) = match why {
            Closing::SlowConsumer => (CloseCode::Policy, "slow consumer"),
            Closing::Restart => (CloseCode::Restart, "server restarting"),
            // 4001: an application code, so clients can tell "sign in again" from other closes.
            Closing::SessionEnded => (CloseCode::Other(4001), "session revoked"),
        };
        ctx.close(Some(CloseReason { code, description: Some(description.into()) }));
        ctx.stop();
    }
}

crate::stream_handlers!(Connection);

impl Handler<plaza_actors::shards::shard::InputRefused> for Connection {
    type Result = ();
    fn handle(&mut self, msg: plaza_actors::shards::shard::InputRefused, ctx: &mut Self::Context) {
        live::shards::refused(self, ctx, msg);
    }
}

impl live::shards::ShardStream for Connection {
    fn shard_subs(&mut self) -> &mut live::shards::ShardSubs {
        &mut self.shards
    }
}

impl Actor for Connection {
    type Context = WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.core.outbound_max());
        live::started(self, ctx);
        let config = &self.core.state.config;
        let (every, timeout) = (Duration::from_millis(config.ws_heartbeat_ms), Duration::from_millis(config.ws_client_timeout_ms));
        ctx.run_interval(every, move |act, ctx| {
            if act.last_seen.elapsed() > timeout {
                tracing::debug!(conn = act.core.id(), "client silent past the timeout; dropping");
                ctx.close(Some(CloseReason { code: CloseCode::Away, description: Some("heartbeat timeout".into()) }));
                ctx.stop();
            } else {
                ctx.ping(b"");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        live::stopped(&self.core);
        self.rooms.leave_all(self.core.id());
        live::shards::stopped(self);
        super::pubsub::stopped(self);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for Connection {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        match item {
            Ok(ws::Message::Text(text)) => {
                self.core.state.metrics.frames_in.inc();
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
                let limit = self.core.state.config.ws_max_frame_bytes;
                self.error(ctx, "FRAME_TOO_LARGE", format!("frames are limited to {limit} bytes"), None);
                ctx.close(Some(CloseReason { code: CloseCode::Size, description: Some("frame too large".into()) }));
                ctx.stop();
            }
            Err(e) => {
                tracing::debug!(conn = self.core.id(), error = %e, "websocket protocol error");
                ctx.close(Some(CloseReason { code: CloseCode::Protocol, description: None }));
                ctx.stop();
            }
        }
    }
}

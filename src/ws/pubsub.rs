//! Pub/sub frames on a `Connection`: `pubsub_subscribe` / `pubsub_unsubscribe` are checked and
//! registered by the `PubSub` actor, which then offers `{"type":"pubsub","topic","message"}`
//! frames to this socket's mailbox (its bounded outbound queue) like every other fan-out.

use actix::prelude::*;
use actix_web_actors::ws::WebsocketContext;
use plaza_actors::pubsub::{Deliver, Leave, Subscribe, Unsubscribe};
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::connection::Connection;
use crate::error::ApiError;
use crate::live::{self, Frame, SharedFrame, Sink};

/// Handles a `pubsub_subscribe` or `pubsub_unsubscribe` frame. Answers
/// `{"type":"pubsub_subscribed","topic"}` / `{"type":"pubsub_unsubscribed","topic"}`, or an
/// error frame whose `ref` is the topic.
pub fn on_frame(conn: &mut Connection, kind: &str, frame: &Value, ctx: &mut WebsocketContext<Connection>) {
    let Some(topic) = frame.get("topic").and_then(Value::as_str).map(String::from) else {
        let e = ApiError::from(PlazaError::Validation("\"topic\" is required".into()));
        return live::send(conn, ctx, Frame::error(e.code(), &e, None));
    };
    let core = conn.core();
    let (pubsub, stream) = (core.state.plaza.pubsub.clone(), core.id());
    if kind == "pubsub_unsubscribe" {
        pubsub.do_send(Unsubscribe { stream, topic: topic.clone() });
        let ack = json!({"type": "pubsub_unsubscribed", "topic": topic});
        return live::send(conn, ctx, Frame::json("pubsub_unsubscribed", &ack));
    }
    let addr = ctx.address();
    let request = Subscribe { stream, auth: core.auth.clone(), topic: topic.clone(), deliver: addr.clone().recipient(), kick: addr.recipient() };
    pubsub
        .send(request)
        .into_actor(conn)
        .map(move |answer, act, ctx| {
            let frame = match answer.map_err(PlazaError::from).and_then(|r| r) {
                Ok(()) => Frame::json("pubsub_subscribed", &json!({"type": "pubsub_subscribed", "topic": topic})),
                Err(e) => {
                    let e = ApiError::from(e);
                    Frame::error(e.code(), &e, Some(&topic))
                }
            };
            live::send(act, ctx, frame);
        })
        .spawn(ctx);
}

/// The socket closed: it leaves every topic.
pub fn stopped(conn: &mut Connection) {
    let core = conn.core();
    core.state.plaza.pubsub.do_send(Leave { stream: core.id() });
}

impl Handler<Deliver> for Connection {
    type Result = ();
    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        live::send_shared(self, ctx, SharedFrame::json("pubsub", &msg.frame));
    }
}

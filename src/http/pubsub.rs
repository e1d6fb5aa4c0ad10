//! `POST /api/pubsub/publish`: hands a message to the `PubSub` actor, which checks the topic
//! rules for the caller and delivers it to the topic's subscribed sockets.

use actix_web::{web, HttpResponse};
use plaza_actors::pubsub::Publish;
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::resource;
use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody};
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/pubsub/publish").route(web::post().to(publish)));
}

/// `{"topic","message"}` → `{"delivered":N}` (sockets the message was handed to).
async fn publish(auth: Auth, state: web::Data<AppState>, JsonBody(body): JsonBody) -> ApiResult {
    let topic = body.get("topic").and_then(Value::as_str).ok_or_else(|| PlazaError::Validation("\"topic\" is required".into()))?;
    let message = body.get("message").cloned().ok_or_else(|| PlazaError::Validation("\"message\" is required".into()))?;
    let delivered = state.plaza.pubsub.send(Publish { auth: auth.ctx, topic: topic.to_string(), message }).await??;
    Ok(HttpResponse::Ok().json(json!({ "delivered": delivered })))
}

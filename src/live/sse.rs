//! The Server-Sent Events side of a stream: who opens it (credentials as for any request, or
//! `?token=` since browsers' EventSource cannot set headers), the response whose body drains a
//! bounded channel, and how a frame becomes an event. `/api/events` and shard SSE share it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, HttpResponse};
use plaza_actors::PlazaError;
use tokio::sync::mpsc;

use super::{Backlogged, Frame};
use crate::error::ApiError;
use crate::extract::Auth;
use crate::AppState;

/// A comment line this often keeps proxies from closing an idle stream.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// The caller opening an SSE stream; refused while the server drains.
pub async fn caller(req: &HttpRequest, state: &AppState, query: &HashMap<String, String>) -> Result<Auth, ApiError> {
    if state.is_draining() {
        return Err(PlazaError::Unavailable("server is draining; reconnect shortly".into()).into());
    }
    match query.get("token") {
        Some(token) => Auth::resolve(state, Some(token.clone())).await,
        None => Auth::extract(req).await,
    }
}

/// The writing end of an SSE response.
pub struct SseChannel {
    tx: mpsc::Sender<Bytes>,
}

impl SseChannel {
    /// A channel of `bound` events (plus one kept for the closing notice) and the streaming
    /// response that drains it.
    pub fn open(bound: usize) -> (SseChannel, HttpResponse) {
        let (tx, rx) = mpsc::channel(bound + 1);
        let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
        let response = HttpResponse::Ok()
            .content_type("text/event-stream")
            .insert_header(("Cache-Control", "no-cache"))
            .insert_header(("X-Accel-Buffering", "no"))
            .streaming(body);
        (SseChannel { tx }, response)
    }

    /// Queues `id: seq` (change frames, so `Last-Event-ID` resumes), `event: type` and
    /// `data: json`. `Err` when the reader fell behind (the last slot is kept for an error
    /// frame, the closing notice); `Ok(false)` when the reader has gone.
    pub fn write(&self, frame: &Frame) -> Result<bool, Backlogged> {
        let notice = frame.kind == "error";
        if self.tx.capacity() <= 1 && !notice {
            return Err(Backlogged);
        }
        let id = frame.seq.map(|seq| format!("id: {seq}\n")).unwrap_or_default();
        let event = Bytes::from(format!("{id}event: {}\ndata: {}\n\n", frame.kind, frame.text));
        Ok(self.tx.try_send(event).is_ok() || notice)
    }

    /// Sends a keep-alive comment; false once the reader has gone.
    pub fn keep_alive(&self) -> bool {
        if self.tx.is_closed() {
            return false;
        }
        let _ = self.tx.try_send(Bytes::from_static(b": keepalive\n\n"));
        true
    }
}

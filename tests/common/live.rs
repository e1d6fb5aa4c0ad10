//! Real WebSocket clients for the socket tests: connect with a token, send a JSON frame, read
//! the next JSON frame (answering the server's pings on the way).

use std::time::Duration;

use actix_codec::Framed;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;

pub type Ws = Framed<BoxedSocket, Codec>;

/// A safety net against a hung test, not a synchronisation: every wait is for a frame.
pub const PATIENCE: Duration = Duration::from_secs(20);

pub fn client() -> awc::Client {
    awc::Client::builder().timeout(PATIENCE).finish()
}

/// What a test passes as a request's bearer token: a token, or `None` for no header.
pub trait Bearer {
    fn token(&self) -> Option<&str>;
}

impl Bearer for &str {
    fn token(&self) -> Option<&str> {
        Some(self)
    }
}

impl Bearer for &String {
    fn token(&self) -> Option<&str> {
        Some(self)
    }
}

impl Bearer for Option<&str> {
    fn token(&self) -> Option<&str> {
        *self
    }
}

/// A request to the test server, with the bearer token when one is given: the status and the
/// JSON body (null when the body is not JSON).
pub async fn http(srv: &actix_test::TestServer, token: impl Bearer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), srv.url(path));
    if let Some(t) = token.token() {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut resp = match body {
        Some(b) => req.send_json(&b).await,
        None => req.send().await,
    }
    .unwrap();
    let bytes = resp.body().limit(64 << 20).await.unwrap();
    (resp.status().as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub async fn connect(srv: &actix_test::TestServer, token: &str) -> Ws {
    let (_, ws) = client().ws(srv.url(&format!("/ws?token={token}"))).max_frame_size(1 << 20).connect().await.unwrap();
    ws
}

pub async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::Text(frame.to_string().into())).await.unwrap();
}

/// The next JSON frame, answering pings on the way; `None` once the server closes.
pub async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let frame = actix_web::rt::time::timeout(PATIENCE, ws.next()).await.expect("a frame within the patience window");
        match frame {
            Some(Ok(Frame::Text(t))) => return Some(serde_json::from_slice(&t).unwrap()),
            Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.unwrap(),
            Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

//! Account actions that end sessions reach open sockets (real server + awc clients): revoking
//! a session by id, changing the password, and revoking an API key close exactly those
//! sessions' WebSockets (4001) and leave the caller's own open.

mod common;

use std::time::Duration;

use actix_codec::Framed;
use actix_web::App;
use awc::ws::{Codec, Frame, Message};
use awc::BoxedSocket;
use common::{config, ORIGIN};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};

type Ws = Framed<BoxedSocket, Codec>;

/// A safety net against a hung test, not a synchronisation.
const PATIENCE: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse battery";

fn client() -> awc::Client {
    awc::Client::builder().timeout(PATIENCE).finish()
}

async fn http(srv: &actix_test::TestServer, token: Option<&str>, method: &str, path: &str, body: Value) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), srv.url(path)).insert_header(("Origin", ORIGIN));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut resp = req.send_json(&body).await.unwrap();
    let bytes = resp.body().await.unwrap();
    (resp.status().as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn connect(srv: &actix_test::TestServer, token: &str) -> Ws {
    let (_, ws) = client().ws(srv.url(&format!("/ws?token={token}"))).connect().await.unwrap();
    ws
}

async fn until_closed(ws: &mut Ws) -> Option<u16> {
    loop {
        match actix_web::rt::time::timeout(PATIENCE, ws.next()).await.expect("the server closes within the patience window") {
            Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.unwrap(),
            Some(Ok(Frame::Close(reason))) => return reason.map(|r| u16::from(r.code)),
            None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn still_open(ws: &mut Ws) {
    ws.send(Message::Text(json!({"type": "ping"}).to_string().into())).await.unwrap();
    loop {
        match actix_web::rt::time::timeout(PATIENCE, ws.next()).await.expect("a pong") {
            Some(Ok(Frame::Text(t))) => {
                let v: Value = serde_json::from_slice(&t).unwrap();
                assert_eq!(v["type"], "pong", "{v}");
                return;
            }
            Some(Ok(Frame::Ping(p))) => ws.send(Message::Pong(p)).await.unwrap(),
            other => panic!("the socket should stay open, got {other:?}"),
        }
    }
}

#[actix_web::test]
async fn ending_sessions_from_the_account_closes_their_sockets() {
    let state = plaza::build_state_with(config(), common::todo_manifest()).unwrap();
    let srv = actix_test::start(move || App::new().configure(plaza::configure(state.clone())));
    let login = json!({"email": "kim@example.com", "password": PASSWORD});
    let (_, reg) = http(&srv, None, "POST", "/api/auth/password/register", login.clone()).await;
    let me = reg["token"].as_str().unwrap().to_string();
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let (_, s) = http(&srv, None, "POST", "/api/auth/password/login", login.clone()).await;
        tokens.push(s["token"].as_str().unwrap().to_string());
    }
    let (_, key) = http(&srv, Some(&me), "POST", "/api/auth/api-keys", json!({"name": "bot", "scope": "read"})).await;
    let mut mine = connect(&srv, &me).await;
    let mut first = connect(&srv, &tokens[0]).await;
    let mut second = connect(&srv, &tokens[1]).await;
    let mut bot = connect(&srv, key["key"].as_str().unwrap()).await;

    // Revoke one session by its listed id: only its socket closes.
    let (_, list) = http(&srv, Some(&tokens[0]), "GET", "/api/auth/sessions", json!(null)).await;
    let own = list["sessions"].as_array().unwrap().iter().find(|s| s["current"] == true).unwrap()["id"].as_str().unwrap().to_string();
    let (status, _) = http(&srv, Some(&me), "DELETE", &format!("/api/auth/sessions/{own}"), json!(null)).await;
    assert_eq!(status, 200);
    assert_eq!(until_closed(&mut first).await, Some(4001));
    still_open(&mut second).await;

    // A password change ends the other sessions (and their sockets), not the caller's or keys.
    let change = json!({"old_password": PASSWORD, "new_password": "another long passphrase"});
    let (status, body) = http(&srv, Some(&me), "POST", "/api/auth/password/change", change).await;
    assert_eq!((status, body["revoked"].clone()), (200, json!(1)));
    assert_eq!(until_closed(&mut second).await, Some(4001));
    still_open(&mut mine).await;
    still_open(&mut bot).await;

    // Revoking the API key closes the socket opened with it.
    let (status, _) = http(&srv, Some(&me), "DELETE", &format!("/api/auth/api-keys/{}", key["id"].as_str().unwrap()), json!(null)).await;
    assert_eq!(status, 200);
    assert_eq!(until_closed(&mut bot).await, Some(4001));
    still_open(&mut mine).await;
}

//! Rooms over real sockets (actix_test server + awc clients) and HTTP: isolation, presence
//! without ghosts, two tabs, caps, rates, idle stop, resume and resync, shared state,
//! persistence across a restart, rules, and HTTP and WebSocket members in one room.

mod common;

use std::time::Duration;

use actix_web::App;
use common::live::{client, connect, http, next, send, Ws};
use common::{config, ADMIN, ORIGIN};
use futures_util::SinkExt;
use plaza::config::Config;
use plaza_actors::AppManifest;
use serde_json::{json, Value};


/// Guests may not join `vip-*`; `save-*` rooms keep their state in the database.
const MANIFEST: &str = r#"{
  "entities": [],
  "rooms": {"rules": [
    {"pattern": "vip-*", "join": "!auth.guest"},
    {"pattern": "save-*", "persist": true},
    {"pattern": "own:*", "join": "room.name == 'own:alice'", "state": "auth.userId == 'alice'"}
  ]}
}"#;


fn state(config: Config) -> actix_web::web::Data<plaza::AppState> {
    plaza::build_state_with(config, AppManifest::from_json(MANIFEST).unwrap()).unwrap()
}

fn serve(state: actix_web::web::Data<plaza::AppState>) -> actix_test::TestServer {
    actix_test::start(move || App::new().configure(plaza::configure(state.clone())))
}

fn server(config: Config) -> actix_test::TestServer {
    serve(state(config))
}


async fn session(srv: &actix_test::TestServer, user: &str) -> String {
    let (_, body) = http(srv, ADMIN, "POST", "/api/auth/session", Some(json!({"user_id": user}))).await;
    body["token"].as_str().unwrap().to_string()
}

async fn guest(srv: &actix_test::TestServer) -> String {
    let mut resp = client().post(srv.url("/api/auth/guest")).insert_header(("Origin", ORIGIN)).send().await.unwrap();
    let body: Value = resp.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}




async fn frame(ws: &mut Ws) -> Value {
    next(ws).await.expect("the socket is open")
}

async fn join(ws: &mut Ws, room: &str, extra: Value) -> Value {
    let mut frame = json!({"type": "join", "room": room});
    frame.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    send(ws, frame).await;
    next(ws).await.unwrap()
}

async fn broadcast(ws: &mut Ws, room: &str, data: Value) {
    send(ws, json!({"type": "broadcast", "room": room, "event": "move", "data": data})).await;
}

fn presence(room: &str, event: &str, user: &str) -> (String, String, String) {
    (room.into(), event.into(), user.into())
}

fn presence_of(f: &Value) -> (String, String, String) {
    assert_eq!(f["type"], "presence", "{f}");
    let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
    (s("room"), s("event"), s("user_id"))
}

#[actix_web::test]
async fn events_stay_in_their_room_and_presence_follows_members() {
    let srv = server(config());
    let (alice, bob, carol) = (session(&srv, "alice").await, session(&srv, "bob").await, session(&srv, "carol").await);
    let (mut a, mut b, mut c) = (connect(&srv, &alice).await, connect(&srv, &bob).await, connect(&srv, &carol).await);

    let joined = join(&mut a, "lobby", json!({"presence": {"status": "here"}})).await;
    assert_eq!((joined["type"].as_str(), joined["room"].as_str(), joined["seq"].as_u64()), (Some("joined"), Some("lobby"), Some(0)));
    assert!(joined["epoch"].is_string());
    assert_eq!(joined["members"], json!([{"user_id": "alice", "presence": {"status": "here"}}]));
    assert_eq!((joined["state"].clone(), joined["state_version"].as_u64()), (json!({}), Some(0)));
    let joined = join(&mut b, "lobby", json!({})).await;
    assert_eq!(joined["members"].as_array().unwrap().len(), 2);
    let seen = frame(&mut a).await;
    assert_eq!(presence_of(&seen), presence("lobby", "joined", "bob"));
    assert_eq!(seen["presence"], Value::Null);
    assert_eq!(join(&mut c, "elsewhere", json!({})).await["type"], "joined");

    broadcast(&mut a, "lobby", json!({"x": 1})).await;
    for ws in [&mut a, &mut b] {
        let event = frame(ws).await;
        assert_eq!(event, json!({"type": "room_event", "room": "lobby", "seq": 1, "from": "alice", "event": "move", "data": {"x": 1}}));
    }
    // Carol's next frame is her own room's event: lobby's never reached her.
    broadcast(&mut c, "elsewhere", json!("hi")).await;
    let event = frame(&mut c).await;
    assert_eq!((event["room"].as_str(), event["seq"].as_u64()), (Some("elsewhere"), Some(1)));

    send(&mut b, json!({"type": "presence", "room": "lobby", "presence": {"status": "away"}})).await;
    for ws in [&mut a, &mut b] {
        let f = frame(ws).await;
        assert_eq!(presence_of(&f), presence("lobby", "updated", "bob"));
        assert_eq!(f["presence"], json!({"status": "away"}));
    }
    send(&mut b, json!({"type": "leave", "room": "lobby"})).await;
    assert_eq!(frame(&mut b).await, json!({"type": "left", "room": "lobby"}));
    assert_eq!(presence_of(&frame(&mut a).await), presence("lobby", "left", "bob"));
    // Not a member any more: broadcasting is refused, naming the room.
    broadcast(&mut b, "lobby", json!(0)).await;
    let refused = frame(&mut b).await;
    assert_eq!((refused["code"].as_str(), refused["ref"].as_str()), (Some("FORBIDDEN"), Some("lobby")));

    let (_, rooms) = http(&srv, &alice, "GET", "/api/rooms", None).await;
    assert_eq!(rooms["rooms"], json!([{"name": "elsewhere", "members": 1}, {"name": "lobby", "members": 1}]));
    let (_, metrics) = http(&srv, ADMIN, "GET", "/metrics", None).await;
    assert_eq!((metrics["rooms"]["active"].as_i64(), metrics["rooms"]["members"].as_i64()), (Some(2), Some(2)));
    assert!(metrics["rooms"]["events_out"].as_u64().unwrap() >= 3);
    let mut text = client().get(srv.url("/metrics")).insert_header(("Accept", "text/plain")).send().await.unwrap();
    let text = String::from_utf8(text.body().await.unwrap().to_vec()).unwrap();
    assert!(text.contains("plaza_rooms 2") && text.contains("plaza_room_events_in_total"), "{text}");
}

#[actix_web::test]
async fn two_tabs_are_one_member_until_the_last_one_leaves() {
    let srv = server(config());
    let (alice, bob) = (session(&srv, "alice").await, session(&srv, "bob").await);
    let mut a = connect(&srv, &alice).await;
    join(&mut a, "r", json!({})).await;
    let (mut tab1, mut tab2) = (connect(&srv, &bob).await, connect(&srv, &bob).await);
    join(&mut tab1, "r", json!({"presence": "one"})).await;
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "joined", "bob"));
    let joined = join(&mut tab2, "r", json!({})).await;
    assert_eq!(joined["members"], json!([{"user_id": "alice", "presence": null}, {"user_id": "bob", "presence": "one"}]));

    // Presence from the second tab is the one member's presence; both tabs see it.
    send(&mut tab2, json!({"type": "presence", "room": "r", "presence": "two"})).await;
    for ws in [&mut a, &mut tab1, &mut tab2] {
        assert_eq!(frame(ws).await["presence"], "two");
    }
    // The first tab closes cleanly: bob is still in the room (alice's next frame is his event).
    tab1.close().await.unwrap();
    drop(tab1);
    broadcast(&mut tab2, "r", json!("still here")).await;
    let event = frame(&mut a).await;
    assert_eq!((event["type"].as_str(), event["from"].as_str()), (Some("room_event"), Some("bob")));
    tab2.close().await.unwrap();
    drop(tab2);
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "left", "bob"));
}

#[actix_web::test]
async fn no_ghosts_after_an_abrupt_drop_a_silent_client_or_a_revoked_session() {
    let srv = server(Config { ws_heartbeat_ms: 50, ws_client_timeout_ms: 300, ..config() });
    let (alice, bob, carol) = (session(&srv, "alice").await, session(&srv, "bob").await, session(&srv, "carol").await);
    let mut a = connect(&srv, &alice).await;
    join(&mut a, "r", json!({})).await;

    // Dropped without a close frame: the TCP connection just goes away.
    let mut b = connect(&srv, &bob).await;
    join(&mut b, "r", json!({})).await;
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "joined", "bob"));
    drop(b);
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "left", "bob"));

    // Silent: the socket stays open but nothing answers the pings.
    let mut c = connect(&srv, &carol).await;
    join(&mut c, "r", json!({})).await;
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "joined", "carol"));
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "left", "carol"), "left within the heartbeat timeout");
    drop(c);

    // Its session revoked: the socket is closed, and so the member leaves.
    let dave = session(&srv, "dave").await;
    let mut d = connect(&srv, &dave).await;
    join(&mut d, "r", json!({})).await;
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "joined", "dave"));
    let (status, _) = http(&srv, &dave, "POST", "/api/auth/logout", None).await;
    assert_eq!(status, 200);
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "left", "dave"));
    let (_, room) = http(&srv, &alice, "GET", "/api/rooms/r", None).await;
    assert_eq!(room["members"], json!([{"user_id": "alice", "presence": null}]));
}

#[actix_web::test]
async fn caps_answer_clear_errors_and_the_member_stays() {
    let srv = server(Config { room_max_members: 2, room_events_per_sec: 1, room_max_per_connection: 2, room_event_max_bytes: 200, ..config() });
    let (alice, bob, carol) = (session(&srv, "alice").await, session(&srv, "bob").await, session(&srv, "carol").await);
    let (mut a, mut b, mut c) = (connect(&srv, &alice).await, connect(&srv, &bob).await, connect(&srv, &carol).await);
    join(&mut a, "full", json!({})).await;
    join(&mut b, "full", json!({})).await;
    frame(&mut a).await;
    let refused = join(&mut c, "full", json!({})).await;
    assert_eq!((refused["code"].as_str(), refused["ref"].as_str(), refused["max"].as_u64()), (Some("ROOM_FULL"), Some("full"), Some(2)));
    let (status, body) = http(&srv, &carol, "POST", "/api/rooms/join", Some(json!({"room": "full"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("ROOM_FULL")));

    // Rooms per connection.
    join(&mut c, "c1", json!({})).await;
    join(&mut c, "c2", json!({})).await;
    let refused = join(&mut c, "c3", json!({})).await;
    assert_eq!((refused["code"].as_str(), refused["ref"].as_str()), (Some("TOO_MANY_ROOMS"), Some("c3")));

    // Events per second per member: a burst beyond the rate is refused, the member stays.
    for n in 0..10 {
        broadcast(&mut a, "full", json!(n)).await;
    }
    let (mut delivered, mut limited) = (0, 0);
    while delivered + limited < 10 {
        let f = frame(&mut a).await;
        match f["type"].as_str() {
            Some("room_event") => delivered += 1,
            Some("error") => {
                assert_eq!((f["code"].as_str(), f["ref"].as_str()), (Some("RATE_LIMITED"), Some("full")));
                limited += 1;
            }
            _ => panic!("unexpected {f}"),
        }
    }
    assert!(limited >= 5, "{limited} of 10 limited");
    let (_, room) = http(&srv, &alice, "GET", "/api/rooms/full", None).await;
    assert_eq!(room["members"].as_array().unwrap().len(), 2, "a limited member stays");

    // Event size.
    let (status, body) =
        http(&srv, ADMIN, "POST", "/api/rooms/broadcast", Some(json!({"room": "full", "event": "big", "data": "x".repeat(300)}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (413, Some("PAYLOAD_TOO_LARGE")));
    let (status, body) = http(&srv, ADMIN, "POST", "/api/rooms/broadcast", Some(json!({"room": "nope", "event": "e"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    let (status, _) = http(&srv, ADMIN, "POST", "/api/rooms/join", Some(json!({"room": "bad name"}))).await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn an_idle_room_stops() {
    let srv = server(Config { room_idle_secs: 0.2, ..config() });
    let alice = session(&srv, "alice").await;
    let mut a = connect(&srv, &alice).await;
    let epoch = join(&mut a, "brief", json!({})).await["epoch"].as_str().unwrap().to_string();
    let (status, _) = http(&srv, &alice, "GET", "/api/rooms/brief", None).await;
    assert_eq!(status, 200);
    send(&mut a, json!({"type": "leave", "room": "brief"})).await;
    assert_eq!(frame(&mut a).await["type"], "left");
    let mut gone = false;
    for _ in 0..400 {
        let (status, body) = http(&srv, &alice, "GET", "/api/rooms/brief", None).await;
        if status == 404 {
            assert_eq!(body["error"]["code"], "NOT_FOUND");
            gone = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(gone, "the room stopped and left the registry");
    let (_, metrics) = http(&srv, ADMIN, "GET", "/metrics", None).await;
    assert_eq!(metrics["rooms"]["active"], 0);
    // It starts again in a new life: a since from the old one is not replayed.
    let refused = join(&mut a, "brief", json!({"since": 0, "epoch": epoch})).await;
    assert_eq!((refused["code"].as_str(), refused["ref"].as_str()), (Some("RESYNC_REQUIRED"), Some("brief")));
    assert_ne!(refused["epoch"].as_str(), Some(epoch.as_str()));
}

#[actix_web::test]
async fn resume_replays_missed_events_or_answers_resync_with_the_state() {
    let srv = server(Config { room_buffer: 4, ..config() });
    let (alice, bob) = (session(&srv, "alice").await, session(&srv, "bob").await);
    let mut b = connect(&srv, &bob).await;
    join(&mut b, "r", json!({})).await;
    let mut a = connect(&srv, &alice).await;
    let epoch = join(&mut a, "r", json!({})).await["epoch"].as_str().unwrap().to_string();
    frame(&mut b).await;
    broadcast(&mut b, "r", json!(1)).await;
    assert_eq!(frame(&mut a).await["seq"], 1);
    assert_eq!(frame(&mut b).await["seq"], 1, "the sender gets its event too");
    drop(a);
    assert_eq!(presence_of(&frame(&mut b).await), presence("r", "left", "alice"));
    for n in 2..=4 {
        broadcast(&mut b, "r", json!(n)).await;
    }
    http(&srv, ADMIN, "POST", "/api/rooms/state", Some(json!({"room": "r", "patch": {"score": 3}}))).await;

    // Back after seq 1: joined (with the state as it is now), then 2..4, then live events.
    let mut a = connect(&srv, &alice).await;
    let joined = join(&mut a, "r", json!({"since": 1, "epoch": epoch})).await;
    assert_eq!((joined["type"].as_str(), joined["seq"].as_u64(), joined["state"].clone()), (Some("joined"), Some(4), json!({"score": 3})));
    for seq in 2..=4 {
        let event = frame(&mut a).await;
        assert_eq!((event["type"].as_str(), event["seq"].as_u64(), event["data"].as_i64()), (Some("room_event"), Some(seq), Some(seq as i64)));
    }
    broadcast(&mut b, "r", json!(5)).await;
    assert_eq!(frame(&mut a).await["seq"], 5, "no gap, no duplicate");

    // Further back than the buffer (4 events: 2..5), or from another epoch: start over.
    let mut late = connect(&srv, &alice).await;
    for (since, their_epoch) in [(0, epoch.as_str()), (3, "0000")] {
        let refused = join(&mut late, "r", json!({"since": since, "epoch": their_epoch})).await;
        assert_eq!((refused["code"].as_str(), refused["ref"].as_str()), (Some("RESYNC_REQUIRED"), Some("r")));
        assert_eq!((refused["seq"].as_u64(), refused["epoch"].as_str()), (Some(5), Some(epoch.as_str())));
        assert_eq!((refused["state"].clone(), refused["state_version"].as_u64()), (json!({"score": 3}), Some(1)));
    }
    let refused = join(&mut late, "r", json!({"since": 1})).await;
    assert_eq!(refused["code"], "VALIDATION", "since needs its epoch");

    // Over HTTP, the same buffer: events after a seq.
    let (_, room) = http(&srv, &alice, "GET", &format!("/api/rooms/r?since=3&epoch={epoch}"), None).await;
    let seqs: Vec<u64> = room["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [4, 5]);
    let (status, body) = http(&srv, &alice, "GET", &format!("/api/rooms/r?since=0&epoch={epoch}"), None).await;
    assert_eq!((status, body["error"]["code"].as_str(), body["error"]["state"].clone()), (410, Some("RESYNC_REQUIRED"), json!({"score": 3})));
}

#[actix_web::test]
async fn state_patches_reach_every_member_in_version_order() {
    let srv = server(Config { room_state_max_bytes: 512, ..config() });
    let (alice, bob, carol) = (session(&srv, "alice").await, session(&srv, "bob").await, session(&srv, "carol").await);
    let (mut a, mut b) = (connect(&srv, &alice).await, connect(&srv, &bob).await);
    join(&mut a, "board", json!({})).await;
    join(&mut b, "board", json!({})).await;
    frame(&mut a).await;
    for n in 0..5 {
        send(&mut a, json!({"type": "state_patch", "room": "board", "patch": {"alice": n, "shapes": {format!("a{n}"): n}}, "ref": n})).await;
        send(&mut b, json!({"type": "state_patch", "room": "board", "patch": {"bob": n, "shapes": {format!("b{n}"): n}}})).await;
    }
    let mut docs = Vec::new();
    for ws in [&mut a, &mut b] {
        let mut doc = json!({});
        for version in 1..=10 {
            let f = frame(ws).await;
            assert_eq!((f["type"].as_str(), f["room"].as_str(), f["version"].as_u64()), (Some("room_state"), Some("board"), Some(version)));
            let from = f["from"].as_str().unwrap();
            assert!(from == "alice" || from == "bob");
            assert_eq!(f["ref"].is_number(), from == "alice", "a patch's ref comes back with it");
            json_patch::merge(&mut doc, &f["patch"]);
        }
        docs.push(doc);
    }
    assert_eq!(docs[0], docs[1], "every member applies the same patches in the same order");
    assert_eq!((docs[0]["alice"].as_i64(), docs[0]["bob"].as_i64(), docs[0]["shapes"].as_object().unwrap().len()), (Some(4), Some(4), 10));

    // A late joiner starts from the merged document.
    let mut c = connect(&srv, &carol).await;
    let joined = join(&mut c, "board", json!({})).await;
    assert_eq!((joined["state"].clone(), joined["state_version"].as_u64()), (docs[0].clone(), Some(10)));
    // Deleting with null, over HTTP; then too large.
    let (status, body) = http(&srv, &carol, "POST", "/api/rooms/state", Some(json!({"room": "board", "patch": {"shapes": null}}))).await;
    assert_eq!((status, body), (200, json!({"state_version": 11})));
    assert_eq!(frame(&mut c).await["patch"], json!({"shapes": null}));
    let (status, body) = http(&srv, &carol, "POST", "/api/rooms/state", Some(json!({"room": "board", "patch": {"big": "x".repeat(600)}}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("STATE_TOO_LARGE")));
    let (_, room) = http(&srv, &carol, "GET", "/api/rooms/board", None).await;
    assert_eq!((room["state"].clone(), room["state_version"].as_u64()), (json!({"alice": 4, "bob": 4}), Some(11)));
}

#[actix_web::test]
async fn a_persisted_room_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let on_disk = || Config { in_memory: false, db: dir.path().join("plaza.db"), ..config() };
    let first = state(on_disk());
    let srv = serve(first.clone());
    let alice = session(&srv, "alice").await;
    let mut a = connect(&srv, &alice).await;
    join(&mut a, "save-1", json!({})).await;
    join(&mut a, "plain", json!({})).await;
    for (room, patch) in [("save-1", json!({"level": 3, "map": {"w": 10}})), ("save-1", json!({"map": {"h": 5}})), ("plain", json!({"x": 1}))] {
        send(&mut a, json!({"type": "state_patch", "room": room, "patch": patch})).await;
        assert_eq!(frame(&mut a).await["type"], "room_state");
    }
    // The drain step: every persisting room saves.
    assert_eq!(first.persist_rooms().await, 1);
    srv.stop().await;

    let srv = serve(state(on_disk()));
    let alice = session(&srv, "alice").await;
    let (status, room) = http(&srv, &alice, "GET", "/api/rooms/save-1", None).await;
    assert_eq!((status, room["state"].clone(), room["state_version"].as_u64()), (200, json!({"level": 3, "map": {"w": 10, "h": 5}}), Some(2)));
    assert_eq!(room["members"], json!([]), "not running: its saved state");
    let (status, _) = http(&srv, &alice, "GET", "/api/rooms/plain", None).await;
    assert_eq!(status, 404, "a room that does not persist is gone");
    let mut a = connect(&srv, &alice).await;
    let joined = join(&mut a, "save-1", json!({})).await;
    assert_eq!((joined["state"].clone(), joined["state_version"].as_u64()), (json!({"level": 3, "map": {"w": 10, "h": 5}}), Some(2)));
    send(&mut a, json!({"type": "state_patch", "room": "save-1", "patch": {"level": 4}})).await;
    assert_eq!(frame(&mut a).await["version"], 3, "versions go on from the saved one");
}

#[actix_web::test]
async fn rules_decide_who_may_join_and_patch() {
    let srv = server(config());
    let (alice, bob, visitor) = (session(&srv, "alice").await, session(&srv, "bob").await, guest(&srv).await);
    let mut g = connect(&srv, &visitor).await;
    let refused = join(&mut g, "vip-1", json!({})).await;
    assert_eq!((refused["type"].as_str(), refused["code"].as_str(), refused["ref"].as_str()), (Some("error"), Some("FORBIDDEN"), Some("vip-1")));
    assert_eq!(join(&mut g, "lobby", json!({})).await["type"], "joined", "guests may join rooms no rule closes");
    let (status, body) = http(&srv, &visitor, "POST", "/api/rooms/join", Some(json!({"room": "vip-1"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("FORBIDDEN")));
    let mut a = connect(&srv, &alice).await;
    assert_eq!(join(&mut a, "vip-1", json!({})).await["type"], "joined");

    // room.name and auth.userId in one rule set.
    assert_eq!(join(&mut a, "own:alice", json!({})).await["type"], "joined");
    let (status, _) = http(&srv, &bob, "POST", "/api/rooms/join", Some(json!({"room": "own:bob"}))).await;
    assert_eq!(status, 403);
    let (status, _) = http(&srv, &bob, "POST", "/api/rooms/join", Some(json!({"room": "own:alice"}))).await;
    assert_eq!(status, 200);
    let (status, _) = http(&srv, &bob, "POST", "/api/rooms/state", Some(json!({"room": "own:alice", "patch": {"a": 1}}))).await;
    assert_eq!(status, 403, "only alice may patch");
    let (_, rooms) = http(&srv, &visitor, "GET", "/api/rooms", None).await;
    assert_eq!(
        rooms["rooms"],
        json!([{"name": "lobby", "members": 1}, {"name": "own:alice", "members": 2}]),
        "the list shows only rooms the caller may join (not vip-1)"
    );

    // Anonymous callers may do nothing in rooms.
    let mut anonymous = client().ws(srv.url("/ws")).connect().await.unwrap().1;
    assert_eq!(join(&mut anonymous, "lobby", json!({})).await["code"], "FORBIDDEN");
    let resp = client().post(srv.url("/api/rooms/join")).insert_header(("Origin", ORIGIN)).send_json(&json!({"room": "lobby"})).await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

#[actix_web::test]
async fn http_and_websocket_members_see_each_other() {
    let srv = server(Config { room_http_member_ttl_secs: 30.0, ..config() });
    let (alice, bob) = (session(&srv, "alice").await, session(&srv, "bob").await);
    let mut a = connect(&srv, &alice).await;
    join(&mut a, "mixed", json!({})).await;

    let (status, joined) = http(&srv, &bob, "POST", "/api/rooms/join", Some(json!({"room": "mixed", "presence": {"via": "http"}}))).await;
    assert_eq!((status, joined["joined"].as_str(), joined["seq"].as_u64()), (200, Some("mixed"), Some(0)));
    assert_eq!(joined["members"].as_array().unwrap().len(), 2);
    let epoch = joined["epoch"].as_str().unwrap().to_string();
    let seen = frame(&mut a).await;
    assert_eq!((presence_of(&seen), seen["presence"].clone()), (presence("mixed", "joined", "bob"), json!({"via": "http"})));

    let (status, sent) = http(&srv, &bob, "POST", "/api/rooms/broadcast", Some(json!({"room": "mixed", "event": "chat", "data": "hi from http"}))).await;
    assert_eq!((status, sent), (200, json!({"delivered": 1, "seq": 1})));
    assert_eq!(frame(&mut a).await, json!({"type": "room_event", "room": "mixed", "seq": 1, "from": "bob", "event": "chat", "data": "hi from http"}));

    send(&mut a, json!({"type": "broadcast", "room": "mixed", "event": "chat", "data": "hi from ws"})).await;
    assert_eq!(frame(&mut a).await["seq"], 2);
    let (_, room) = http(&srv, &bob, "GET", &format!("/api/rooms/mixed?since=1&epoch={epoch}"), None).await;
    assert_eq!(room["events"], json!([{"type": "room_event", "room": "mixed", "seq": 2, "from": "alice", "event": "chat", "data": "hi from ws"}]));

    // The server (admin) speaks as nobody and acts for a user it names.
    let (_, sent) = http(&srv, ADMIN, "POST", "/api/rooms/broadcast", Some(json!({"room": "mixed", "event": "tick", "data": 1}))).await;
    assert_eq!(sent["seq"], 3);
    assert_eq!(frame(&mut a).await["from"], Value::Null);
    let (status, _) = http(&srv, ADMIN, "POST", "/api/rooms/presence", Some(json!({"room": "mixed", "user_id": "bob", "presence": "afk"}))).await;
    assert_eq!(status, 200);
    assert_eq!(frame(&mut a).await["presence"], "afk");

    let (status, left) = http(&srv, &bob, "POST", "/api/rooms/leave", Some(json!({"room": "mixed"}))).await;
    assert_eq!((status, left), (200, json!({"left": "mixed"})));
    assert_eq!(presence_of(&frame(&mut a).await), presence("mixed", "left", "bob"));
}

#[actix_web::test]
async fn an_http_member_expires_unless_it_joins_again() {
    let srv = server(Config { room_http_member_ttl_secs: 0.3, ..config() });
    let (alice, bob) = (session(&srv, "alice").await, session(&srv, "bob").await);
    let mut a = connect(&srv, &alice).await;
    join(&mut a, "r", json!({})).await;
    http(&srv, &bob, "POST", "/api/rooms/join", Some(json!({"room": "r"}))).await;
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "joined", "bob"));
    let started = std::time::Instant::now();
    assert_eq!(presence_of(&frame(&mut a).await), presence("r", "left", "bob"));
    assert!(started.elapsed() >= Duration::from_millis(250), "not before its TTL");
}

//! The Room actor's logic without sockets: probes stand in for member connections.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::*;
use crate::changelog::SlowConsumer;
use crate::model::policy::RoomRules;

/// A safety net against a hung test; every wait is for a frame.
const PATIENCE: Duration = Duration::from_secs(10);

/// A member connection: forwards each frame (and a kick, as `{"kicked":true}`) to the test.
struct Probe(mpsc::UnboundedSender<Value>);

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<RoomFrame> for Probe {
    type Result = ();
    fn handle(&mut self, msg: RoomFrame, _: &mut Context<Self>) {
        let _ = self.0.send(serde_json::from_str(&msg.json).unwrap_or(Value::Null));
    }
}

impl Handler<SlowConsumer> for Probe {
    type Result = ();
    fn handle(&mut self, _: SlowConsumer, _: &mut Context<Self>) {
        let _ = self.0.send(json!({"kicked": true}));
    }
}

struct Member {
    conn: MemberConn,
    rx: mpsc::UnboundedReceiver<Value>,
}

impl Member {
    fn new(id: u64) -> Member {
        let (tx, rx) = mpsc::unbounded_channel();
        let probe = Probe(tx).start();
        Member { conn: MemberConn { id, deliver: probe.clone().recipient(), kick: probe.recipient() }, rx }
    }

    async fn next(&mut self) -> Value {
        actix::clock::timeout(PATIENCE, self.rx.recv()).await.expect("a frame in time").expect("probe alive")
    }

    /// Nothing more has arrived (after a round trip through the room that would have sent it).
    fn idle(&mut self) -> bool {
        self.rx.try_recv().is_err()
    }
}

fn rooms(settings: RoomSettings, manifest_rooms: Option<&str>) -> Rooms {
    let manifest = match manifest_rooms {
        Some(r) => crate::AppManifest::from_json(&format!(r#"{{"rooms":{r}}}"#)).unwrap(),
        None => crate::AppManifest::default(),
    };
    let rules = Arc::new(RoomRules::from_manifest(&manifest).unwrap());
    let settings = Arc::new(RoomSettings { threads: 0, ..settings });
    let stats = Arc::new(RoomStats::default());
    let registry = RoomRegistry::new(rules.clone(), settings.clone(), stats.clone(), None).start();
    Rooms { registry, rules, settings, stats }
}

fn join(user: &str, m: &Member) -> Join {
    Join { user: user.into(), presence: None, via: Via::Socket(m.conn.clone()), resume: None }
}

fn code(e: &PlazaError) -> &'static str {
    match e {
        PlazaError::Room(r) => r.code(),
        PlazaError::RateLimited { .. } => "RATE_LIMITED",
        _ => "OTHER",
    }
}

async fn broadcast(rooms: &Rooms, room: &str, from: Option<&str>, n: i64) -> Result<Delivered> {
    rooms.ask(room, Broadcast { from: from.map(Into::into), event: "e".into(), data: json!(n) }).await?
}

#[actix::test]
async fn events_presence_and_two_tabs_stay_in_their_room() {
    let rooms = rooms(RoomSettings::default(), None);
    let (mut a, mut b, mut b2, mut c) = (Member::new(1), Member::new(2), Member::new(3), Member::new(4));
    rooms.join("r", join("alice", &a)).await.unwrap();
    let joined = a.next().await;
    assert_eq!((joined["type"].as_str(), joined["seq"].as_u64()), (Some("joined"), Some(0)));
    assert_eq!(joined["members"], json!([{"user_id": "alice", "presence": null}]));
    rooms.join("r", Join { presence: Some(json!({"x": 1})), ..join("bob", &b) }).await.unwrap();
    assert_eq!(b.next().await["members"].as_array().unwrap().len(), 2);
    assert_eq!(a.next().await, json!({"type":"presence","room":"r","event":"joined","user_id":"bob","presence":{"x":1}}));
    // Bob's second tab is the same member: no presence event, and it sees his presence.
    rooms.join("r", join("bob", &b2)).await.unwrap();
    assert_eq!(b2.next().await["members"][1], json!({"user_id": "bob", "presence": {"x": 1}}));
    rooms.join("other", join("carol", &c)).await.unwrap();
    c.next().await;

    let sent = broadcast(&rooms, "r", Some("alice"), 7).await.unwrap();
    assert_eq!(sent, Delivered { delivered: 3, seq: 1 });
    for m in [&mut a, &mut b, &mut b2] {
        assert_eq!(m.next().await, json!({"type":"room_event","room":"r","seq":1,"from":"alice","event":"e","data":7}));
    }
    assert!(c.idle(), "another room's member sees nothing");
    assert_eq!(broadcast(&rooms, "other", None, 8).await.unwrap().seq, 1, "each room has its own seq");
    assert_eq!(c.next().await["from"], Value::Null, "the server's events are from null");

    // Presence from either tab is the one member's; the last tab leaving makes bob leave.
    rooms.ask("r", SetPresence { user: "bob".into(), presence: json!("away") }).await.unwrap().unwrap();
    for m in [&mut a, &mut b, &mut b2] {
        assert_eq!(m.next().await["presence"], "away");
    }
    rooms.ask("r", Leave { user: "bob".into(), via: ViaId::Socket(3) }).await.unwrap();
    assert_eq!(b2.next().await, json!({"type": "left", "room": "r"}));
    rooms.ask("r", Leave { user: "bob".into(), via: ViaId::Socket(2) }).await.unwrap();
    assert_eq!(b.next().await["type"], "left");
    assert_eq!(a.next().await, json!({"type":"presence","room":"r","event":"left","user_id":"bob"}));
    assert_eq!(rooms.ask("r", Count).await.unwrap(), 1);
    assert_eq!(code(&broadcast(&rooms, "r", Some("bob"), 0).await.unwrap_err()), "FORBIDDEN", "not a member any more");
}

#[actix::test]
async fn resume_replays_the_buffer_or_asks_for_a_resync() {
    let rooms = rooms(RoomSettings { buffer: 4, ..Default::default() }, None);
    let mut a = Member::new(1);
    rooms.join("r", join("alice", &a)).await.unwrap();
    let epoch = a.next().await["epoch"].as_str().unwrap().to_string();
    for n in 1..=6 {
        broadcast(&rooms, "r", None, n).await.unwrap();
    }
    let mut b = Member::new(2);
    rooms.join("r", Join { resume: Some((3, epoch.clone())), ..join("bob", &b) }).await.unwrap();
    assert_eq!(b.next().await["seq"], 6);
    for seq in 4..=6 {
        assert_eq!(b.next().await["seq"], seq, "no gap, no duplicate");
    }
    broadcast(&rooms, "r", None, 7).await.unwrap();
    assert_eq!(b.next().await["seq"], 7, "then live events");

    let resume = |since: u64, epoch: &str| Join { resume: Some((since, epoch.to_string())), ..join("carol", &Member::new(3)) };
    for (since, their_epoch) in [(2, epoch.as_str()), (8, epoch.as_str()), (6, "an-old-epoch")] {
        match rooms.join("r", resume(since, their_epoch)).await {
            Err(PlazaError::Room(RoomError::ResyncRequired { resync, .. })) => {
                assert_eq!((resync.seq, resync.epoch.to_string(), resync.state_version), (7, epoch.clone(), 0));
            }
            Err(e) => panic!("since {since}: {e}"),
            Ok(_) => panic!("since {since} in {their_epoch} must not resume"),
        }
    }
    assert_eq!(rooms.ask("r", Count).await.unwrap(), 2, "a refused resume does not join");
    assert!(rooms.join("r", resume(3, &epoch)).await.is_ok(), "the oldest buffered seq still resumes");
}

#[actix::test]
async fn caps_rates_and_state() {
    let settings = RoomSettings { events_per_sec: 2, state_max_bytes: 64, event_max_bytes: 100, ..Default::default() };
    let rooms = rooms(settings, Some(r#"{"max_members": 2}"#));
    let (mut a, mut b) = (Member::new(1), Member::new(2));
    rooms.join("r", join("alice", &a)).await.unwrap();
    rooms.join("r", join("bob", &b)).await.unwrap();
    let full = rooms.join("r", join("carol", &Member::new(3))).await.err().unwrap();
    assert_eq!(code(&full), "ROOM_FULL");
    assert!(rooms.join("r", join("alice", &Member::new(4))).await.is_ok(), "another tab of a member is not a new member");

    // Rate: a burst of one second's worth, then RATE_LIMITED; the member stays.
    let outcomes: Vec<_> = burst(&rooms).await;
    assert!(outcomes.iter().filter(|r| r.is_err()).all(|r| code(r.as_ref().unwrap_err()) == "RATE_LIMITED"));
    assert!(outcomes.iter().filter(|r| r.is_err()).count() >= 3, "{outcomes:?}");
    assert_eq!(rooms.ask("r", Count).await.unwrap(), 2);
    let big = rooms.ask("r", Broadcast { from: None, event: "e".into(), data: json!("x".repeat(200)) }).await.unwrap().unwrap_err();
    assert_eq!(code(&big), "PAYLOAD_TOO_LARGE");

    // State: merge patches, versions in order, size bound checked on the merged document.
    let patch = |p: Value| PatchState { from: None, patch: p, reference: Some(json!("r1")) };
    assert_eq!(rooms.ask("r", patch(json!({"a": 1, "b": {"c": 2}}))).await.unwrap().unwrap(), 1);
    assert_eq!(rooms.ask("r", patch(json!({"b": {"c": null, "d": 3}}))).await.unwrap().unwrap(), 2);
    let too_big = rooms.ask("r", patch(json!({"z": "y".repeat(80)}))).await.unwrap().unwrap_err();
    assert_eq!(code(&too_big), "STATE_TOO_LARGE");
    let described = rooms.ask("r", Describe { since: None }).await.unwrap().unwrap();
    assert_eq!((described.state, described.state_version), (json!({"a": 1, "b": {"d": 3}}), 2));
    let mut versions = Vec::new();
    while versions.len() < 2 {
        let frame = b.next().await;
        if frame["type"] == "room_state" {
            assert_eq!(frame["ref"], "r1");
            versions.push(frame["version"].as_u64().unwrap());
        }
    }
    assert_eq!(versions, [1, 2]);
    assert!(a.next().await["type"].is_string());
}

/// Eight quick broadcasts from alice against a rate of 2 per second.
async fn burst(rooms: &Rooms) -> Vec<Result<Delivered>> {
    let mut out = Vec::new();
    for n in 0..8 {
        out.push(broadcast(rooms, "r", Some("alice"), n).await);
    }
    out
}

#[actix::test]
async fn a_full_mailbox_drops_only_that_member() {
    let rooms = rooms(RoomSettings::default(), None);
    let mut fast = Member::new(1);
    // A connection that never reads: its mailbox (2 frames) fills up.
    let stuck: Context<Probe> = Context::new();
    let (kick_tx, mut kick_rx) = mpsc::unbounded_channel();
    let kick = Probe(kick_tx).start();
    let mut stuck_ctx = stuck;
    stuck_ctx.set_mailbox_capacity(2);
    let slow = MemberConn { id: 2, deliver: stuck_ctx.address().recipient(), kick: kick.recipient() };
    rooms.join("r", join("fast", &fast)).await.unwrap();
    rooms.join("r", Join { via: Via::Socket(slow), ..join("slow", &fast) }).await.unwrap();
    for n in 0..5 {
        broadcast(&rooms, "r", None, n).await.unwrap();
    }
    assert_eq!(actix::clock::timeout(PATIENCE, kick_rx.recv()).await.unwrap(), Some(json!({"kicked": true})));
    assert_eq!(rooms.ask("r", Count).await.unwrap(), 1);
    let mut frames = Vec::new();
    while frames.last() != Some(&json!("left")) {
        let f = fast.next().await;
        frames.push(if f["event"] == "left" { json!("left") } else { f["type"].clone() });
    }
    assert!(frames.iter().filter(|f| **f == json!("room_event")).count() >= 2, "{frames:?}");
    assert_eq!(rooms.stats.slow_members_dropped.load(std::sync::atomic::Ordering::Relaxed), 1);
    drop(stuck_ctx);
}

#[actix::test]
async fn an_idle_room_stops_and_http_members_expire() {
    let settings = RoomSettings { idle: Duration::from_millis(50), http_member_ttl: Duration::from_millis(50), ..Default::default() };
    let rooms = rooms(settings, None);
    let mut watcher = Member::new(1);
    rooms.join("r", join("watcher", &watcher)).await.unwrap();
    watcher.next().await;
    let http = Join { user: "h".into(), presence: None, via: Via::Http, resume: None };
    let joined = rooms.join("r", http).await.unwrap();
    assert_eq!(joined.snapshot.unwrap().members.len(), 2);
    assert_eq!(watcher.next().await["event"], "joined");
    assert_eq!(watcher.next().await, json!({"type":"presence","room":"r","event":"left","user_id":"h"}), "expired after its TTL");

    let epoch = rooms.ask("r", Describe { since: None }).await.unwrap().unwrap().epoch;
    rooms.ask("r", Leave { user: "watcher".into(), via: ViaId::Socket(1) }).await.unwrap();
    assert_eq!(watcher.next().await["type"], "left");
    let mut stopped = false;
    for _ in 0..200 {
        if rooms.lookup("r").await.unwrap().is_none() {
            stopped = true;
            break;
        }
        actix::clock::sleep(Duration::from_millis(10)).await;
    }
    assert!(stopped, "the registry forgot the room after it stopped");
    assert_eq!(rooms.stats.rooms.load(std::sync::atomic::Ordering::Relaxed), 0);
    rooms.join("r", join("watcher", &watcher)).await.unwrap();
    assert_ne!(watcher.next().await["epoch"].as_str().unwrap(), &*epoch, "a new life, a new epoch");
}

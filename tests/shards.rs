//! Shards over real sockets (actix_test server + awc clients): the tick rate, inputs in order,
//! slow subscribers, crash isolation, admin start/stop, limits, SSE, manifest shards at boot.
//! Rates are measured by counting ticks over a window of received frames, never by sleeping.

use std::time::{Duration, Instant};

use actix_web::App;
use futures_util::StreamExt;
use plaza::config::Config;
use plaza_actors::shards::{Simulation, SimulationKinds};
use plaza_actors::AppManifest;
use serde_json::{json, Value};

mod common;

use common::live::{client, connect, http, next, send, Ws, PATIENCE};

const ADMIN: &str = "shards-admin";

/// Test-only kind: every tick counts up; the snapshot carries `bytes` of padding.
struct Blob;

impl Simulation for Blob {
    type State = (u64, String);
    fn init(&self, config: &Value) -> Result<(u64, String), String> {
        Ok((0, "x".repeat(config["bytes"].as_u64().unwrap_or(8) as usize)))
    }
    fn apply_input(&self, _: &mut (u64, String), _: &str, _: &Value) -> Result<(), String> {
        Ok(())
    }
    fn step(&self, state: &mut (u64, String), _: f64) {
        state.0 += 1;
    }
    fn snapshot(&self, state: &(u64, String)) -> Value {
        json!({"n": state.0, "pad": state.1})
    }
}

/// Test-only kind: panics in `apply_input` on `{"panic":true}`, and in `step` at tick
/// `config.panic_at` when given.
struct Boom;

impl Simulation for Boom {
    type State = (u64, Option<u64>);
    fn init(&self, config: &Value) -> Result<(u64, Option<u64>), String> {
        Ok((0, config["panic_at"].as_u64()))
    }
    fn apply_input(&self, _: &mut (u64, Option<u64>), _: &str, input: &Value) -> Result<(), String> {
        if input["panic"] == true {
            panic!("boom: the input asked for it");
        }
        Ok(())
    }
    fn step(&self, state: &mut (u64, Option<u64>), _: f64) {
        state.0 += 1;
        if state.1 == Some(state.0) {
            panic!("boom: step {}", state.0);
        }
    }
    fn snapshot(&self, state: &(u64, Option<u64>)) -> Value {
        json!({"n": state.0})
    }
}

/// Test-only kind with deltas: counts ticks; each delta is `{"n": next}`.
struct Deltas;

impl Simulation for Deltas {
    type State = u64;
    fn init(&self, _: &Value) -> Result<u64, String> {
        Ok(0)
    }
    fn apply_input(&self, _: &mut u64, _: &str, _: &Value) -> Result<(), String> {
        Ok(())
    }
    fn step(&self, n: &mut u64, _: f64) {
        *n += 1;
    }
    fn snapshot(&self, n: &u64) -> Value {
        json!({"n": n})
    }
    fn delta(&self, _: &Value, next: &Value) -> Option<Value> {
        Some(json!({"n": next["n"]}))
    }
}

fn config() -> Config {
    Config { admin_token: Some(ADMIN.into()), ..Config::for_tests() }
}

fn kinds() -> SimulationKinds {
    let mut kinds = SimulationKinds::default();
    kinds.register("blob", Blob).register("boom", Boom).register("deltas", Deltas);
    kinds
}

fn server_with(config: Config, manifest: &str) -> actix_test::TestServer {
    let manifest = AppManifest::from_json(manifest).unwrap();
    let state = plaza::build_state_with_simulations(config, manifest, plaza::mailer::from_config(None), kinds()).unwrap();
    actix_test::start(move || App::new().configure(plaza::configure(state.clone())))
}

fn server() -> actix_test::TestServer {
    server_with(config(), "{}")
}


async fn session(srv: &actix_test::TestServer, user: &str) -> String {
    let (_, body) = http(srv, Some(ADMIN), "POST", "/api/auth/session", Some(json!({"user_id": user}))).await;
    body["token"].as_str().unwrap().to_string()
}

async fn start_shard(srv: &actix_test::TestServer, spec: Value) {
    let (status, body) = http(srv, Some(ADMIN), "POST", "/api/shards", Some(spec)).await;
    assert_eq!(status, 201, "{body}");
}




/// The next snapshot frame of `shard` (other frames of other shards are skipped; an error
/// frame fails the test).
async fn snapshot(ws: &mut Ws, shard: &str) -> Value {
    loop {
        let frame = next(ws).await.expect("socket open");
        assert_ne!(frame["type"], "error", "{frame}");
        if frame["type"] == "snapshot" && frame["shard"] == shard {
            return frame;
        }
    }
}

/// Snapshots until `done` holds for one.
async fn snapshot_until(ws: &mut Ws, shard: &str, done: impl Fn(&Value) -> bool) -> Value {
    loop {
        let frame = snapshot(ws, shard).await;
        if done(&frame) {
            return frame;
        }
    }
}

fn tick(frame: &Value) -> u64 {
    frame["tick"].as_u64().unwrap_or_else(|| panic!("no tick in {frame}"))
}

/// Reads `shard`'s snapshots for `window`: (ticks advanced, seconds between the first and the
/// last frame, frames received).
async fn tick_rate(ws: &mut Ws, shard: &str, window: Duration) -> (u64, f64, u64) {
    let first = snapshot(ws, shard).await;
    let began = Instant::now();
    let (mut last, mut frames) = (first.clone(), 0);
    while began.elapsed() < window {
        let frame = snapshot(ws, shard).await;
        assert!(tick(&frame) > tick(&last), "ticks only increase: {} after {}", tick(&frame), tick(&last));
        last = frame;
        frames += 1;
    }
    (tick(&last) - tick(&first), began.elapsed().as_secs_f64(), frames)
}

#[actix_web::test]
async fn subscribers_receive_every_tick_at_the_configured_rate() {
    let srv = server();
    start_shard(&srv, json!({"name": "arena-30", "sim": "arena", "tick_hz": 30})).await;
    let alice = session(&srv, "alice").await;
    let mut ws = connect(&srv, &alice).await;
    send(&mut ws, json!({"type": "shard_subscribe", "shard": "arena-30"})).await;

    let first = snapshot(&mut ws, "arena-30").await;
    assert_eq!(first["state"]["size"], json!([100.0, 100.0]));
    // Subscribing made alice a player: she is in the state from the next tick on.
    let joined = snapshot_until(&mut ws, "arena-30", |f| f["state"]["players"]["alice"].is_object()).await;
    assert!(tick(&joined) <= tick(&first) + 2, "alice appears at the next tick");

    // The tolerance covers this test's own scheduling on a busy machine; a schedule that
    // drifted or doubled would be far outside it.
    let (ticks, secs, frames) = tick_rate(&mut ws, "arena-30", Duration::from_secs(2)).await;
    let rate = ticks as f64 / secs;
    assert!((24.0..=36.0).contains(&rate), "30 Hz configured, measured {rate:.1} Hz ({ticks} ticks in {secs:.2} s)");
    // A reading subscriber gets every tick unless its socket's thread is starved for longer
    // than a tick (then it skips to the latest, by design); plaza-load counts this exactly.
    assert!(frames * 100 >= ticks * 95, "a reading subscriber gets (nearly) every tick: {frames} frames for {ticks} ticks");

    let (_, list) = http(&srv, None, "GET", "/api/shards", None).await;
    let row = &list["shards"][0];
    assert_eq!((row["name"].as_str(), row["sim"].as_str(), row["tick_hz"].as_u64()), (Some("arena-30"), Some("arena"), Some(30)));
    assert_eq!((row["players"].as_u64(), row["subscribers"].as_u64()), (Some(1), Some(1)));
    assert!(row["tick"].as_u64().unwrap() >= tick(&first) + ticks);

    // Unsubscribing answers and makes alice leave.
    send(&mut ws, json!({"type": "shard_unsubscribe", "shard": "arena-30"})).await;
    let reply = loop {
        let f = next(&mut ws).await.unwrap();
        if f["type"] != "snapshot" {
            break f;
        }
    };
    assert_eq!(reply, json!({"type": "shard_unsubscribed", "shard": "arena-30"}));
    let mut watcher = connect(&srv, ADMIN).await;
    send(&mut watcher, json!({"type": "shard_subscribe", "shard": "arena-30"})).await;
    snapshot_until(&mut watcher, "arena-30", |f| f["state"]["players"].as_object().is_some_and(|p| p.is_empty())).await;
    let (_, metrics) = http(&srv, None, "GET", "/metrics", None).await;
    let shards = &metrics["shards"];
    assert_eq!(shards["running"], 1);
    assert!(shards["ticks"].as_u64().unwrap() >= ticks, "{shards}");
    assert!(shards["tick_lateness"]["count"].as_u64().unwrap() >= ticks, "{shards}");
    assert!(shards["tick_duration"]["p99_ms"].is_number(), "{shards}");
}

#[actix_web::test]
async fn inputs_change_state_in_arrival_order() {
    let srv = server();
    start_shard(&srv, json!({"name": "duel", "sim": "arena", "tick_hz": 20, "config": {"max_speed": 10}})).await;
    let bob = session(&srv, "bob").await;
    let mut ws = connect(&srv, &bob).await;
    send(&mut ws, json!({"type": "shard_subscribe", "shard": "duel"})).await;
    snapshot_until(&mut ws, "duel", |f| f["state"]["players"]["bob"].is_object()).await;

    // Back to back, likely within one tick: the last one to arrive is the one that stays.
    let moves = [[1, 0], [0, 1], [-1, 0], [0, -1]];
    for m in moves {
        send(&mut ws, json!({"type": "shard_input", "shard": "duel", "input": {"move": m}})).await;
    }
    let bob_v = |f: &Value| (f["state"]["players"]["bob"]["vx"].as_f64().unwrap(), f["state"]["players"]["bob"]["vy"].as_f64().unwrap());
    let settled = snapshot_until(&mut ws, "duel", |f| bob_v(f) == (0.0, -10.0)).await;
    for _ in 0..5 {
        let f = snapshot(&mut ws, "duel").await;
        assert_eq!(bob_v(&f), (0.0, -10.0), "the last input wins and stays: {f}");
    }
    let y0 = settled["state"]["players"]["bob"]["y"].as_f64().unwrap();

    // Over HTTP the answer names the tick that applies the input; that tick shows it.
    let (status, body) = http(&srv, &bob, "POST", "/api/shards/duel/input", Some(json!({"input": {"move": [1, 0]}}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["queued"], true);
    let at = body["tick"].as_u64().unwrap();
    let before = snapshot_until(&mut ws, "duel", |f| tick(f) >= at - 1).await;
    if tick(&before) == at - 1 {
        assert_eq!(bob_v(&before), (0.0, -10.0), "not applied before its tick");
        let applied = snapshot(&mut ws, "duel").await;
        assert_eq!((tick(&applied), bob_v(&applied)), (at, (10.0, 0.0)));
    }
    let now = snapshot(&mut ws, "duel").await;
    assert_eq!(bob_v(&now), (10.0, 0.0));
    assert!(now["state"]["players"]["bob"]["y"].as_f64().unwrap() < y0, "bob moved down before turning");

    // A bad input is refused at once with the simulation's reason, ref = the shard.
    send(&mut ws, json!({"type": "shard_input", "shard": "duel", "input": {"jump": true}})).await;
    let refused = loop {
        let f = next(&mut ws).await.unwrap();
        if f["type"] == "error" {
            break f;
        }
    };
    assert_eq!((refused["code"].as_str(), refused["ref"].as_str()), (Some("VALIDATION"), Some("duel")), "{refused}");
    let (status, body) = http(&srv, &bob, "POST", "/api/shards/duel/input", Some(json!({"input": {"move": "up"}}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("VALIDATION")));
}

#[actix_web::test]
async fn a_subscriber_that_never_reads_does_not_slow_ticks() {
    let srv = server_with(Config { max_body_bytes: 1 << 20, ..config() }, "{}");
    // 128 KiB snapshots at 60 Hz: 7.5 MiB/s, far past the socket buffers of a reader that
    // never reads.
    start_shard(&srv, json!({"name": "big", "sim": "blob", "tick_hz": 60, "config": {"bytes": 128 * 1024}})).await;
    let mut slow = connect(&srv, ADMIN).await;
    send(&mut slow, json!({"type": "shard_subscribe", "shard": "big"})).await;
    let mut fast = connect(&srv, ADMIN).await;
    send(&mut fast, json!({"type": "shard_subscribe", "shard": "big"})).await;

    let (ticks, secs, _) = tick_rate(&mut fast, "big", Duration::from_secs(4)).await;
    let rate = ticks as f64 / secs;
    assert!((48.0..=72.0).contains(&rate), "60 Hz configured, measured {rate:.1} Hz beside a stalled subscriber");
    let latest = tick(&snapshot(&mut fast, "big").await);

    // The stalled subscriber was kept, with only the latest state: reading now, it catches up
    // to the present having skipped the ticks it could not take, and was never cut off.
    let (mut received, mut last, mut first) = (0u64, None, None);
    while last.is_none_or(|l| l < latest) {
        let frame = next(&mut slow).await.expect("the slow subscriber is still connected");
        assert_eq!(frame["type"], "snapshot", "{}", frame["type"]);
        let t = tick(&frame);
        assert!(last.is_none_or(|l| t > l), "in order");
        first.get_or_insert(t);
        last = Some(t);
        received += 1;
    }
    let span = last.unwrap() - first.unwrap() + 1;
    assert!(received < span, "it skipped ticks rather than queueing them all ({received} frames for {span} ticks)");
    let (_, metrics) = http(&srv, None, "GET", "/metrics", None).await;
    assert_eq!(metrics["ws"]["slow_consumers_dropped"], 0, "nobody was disconnected");
}

#[actix_web::test]
async fn a_panicking_simulation_stops_only_its_shard() {
    let srv = server();
    start_shard(&srv, json!({"name": "fragile", "sim": "boom", "tick_hz": 20})).await;
    start_shard(&srv, json!({"name": "steppy", "sim": "boom", "tick_hz": 20, "config": {"panic_at": 10}})).await;
    start_shard(&srv, json!({"name": "calm", "sim": "arena", "tick_hz": 20})).await;
    let carol = session(&srv, "carol").await;
    let mut doomed = connect(&srv, &carol).await;
    send(&mut doomed, json!({"type": "shard_subscribe", "shard": "fragile"})).await;
    send(&mut doomed, json!({"type": "shard_subscribe", "shard": "steppy"})).await;
    let mut calm = connect(&srv, &carol).await;
    send(&mut calm, json!({"type": "shard_subscribe", "shard": "calm"})).await;
    snapshot(&mut doomed, "fragile").await;

    send(&mut doomed, json!({"type": "shard_input", "shard": "fragile", "input": {"panic": true}})).await;
    let mut crashed = Vec::new();
    while crashed.len() < 2 {
        let frame = next(&mut doomed).await.expect("the socket stays open");
        if frame["type"] == "error" {
            assert_eq!(frame["code"], "SHARD_CRASHED", "{frame}");
            crashed.push(frame["ref"].as_str().unwrap().to_string());
        }
    }
    crashed.sort();
    assert_eq!(crashed, ["fragile", "steppy"], "a panic in apply_input and one in step");

    // The other shard, the socket and the process carry on.
    let after = tick(&snapshot(&mut calm, "calm").await);
    let later = snapshot_until(&mut calm, "calm", |f| tick(f) >= after + 5).await;
    assert!(later["state"]["players"]["carol"].is_object());
    send(&mut doomed, json!({"type": "shard_subscribe", "shard": "calm"})).await;
    snapshot(&mut doomed, "calm").await;
    let (status, body) = http(&srv, None, "GET", "/api/shards/fragile", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    let (_, list) = http(&srv, None, "GET", "/api/shards", None).await;
    let names: Vec<&str> = list["shards"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["calm"]);
    let (_, metrics) = http(&srv, None, "GET", "/metrics", None).await;
    assert_eq!((metrics["shards"]["crashes"].as_u64(), metrics["shards"]["running"].as_u64()), (Some(2), Some(1)));
    // The name is free again.
    start_shard(&srv, json!({"name": "fragile", "sim": "boom"})).await;
}

#[actix_web::test]
async fn admins_start_and_stop_shards_and_limits_answer_clearly() {
    let srv = server_with(Config { shard_inputs_per_sec: 3, shard_max: 2, shard_max_players: 1, ..config() }, "{}");
    let dave = session(&srv, "dave").await;
    let spec = json!({"name": "room-1", "sim": "arena", "tick_hz": 10, "config": {"width": 50, "height": 30}});
    for token in [Some(dave.as_str()), Some("wrong")] {
        let (status, body) = http(&srv, token, "POST", "/api/shards", Some(spec.clone())).await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("FORBIDDEN")), "{token:?}: {body}");
    }
    let (status, body) = http(&srv, ADMIN, "POST", "/api/shards", Some(spec.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, json!({"name": "room-1", "sim": "arena", "tick_hz": 10, "persist": false}));
    let refusals = [
        (spec.clone(), 409, "CONFLICT"),
        (json!({"name": "x", "sim": "chess"}), 400, "VALIDATION"),
        (json!({"name": "x", "sim": "arena", "tick_hz": 500}), 400, "VALIDATION"),
        (json!({"name": "bad name", "sim": "arena"}), 400, "VALIDATION"),
        (json!({"name": "x", "sim": "arena", "config": {"width": -3}}), 400, "VALIDATION"),
    ];
    for (body, status, code) in refusals {
        let (s, reply) = http(&srv, ADMIN, "POST", "/api/shards", Some(body.clone())).await;
        assert_eq!((s, reply["error"]["code"].as_str()), (status, Some(code)), "{body}: {reply}");
    }
    start_shard(&srv, json!({"name": "room-2", "sim": "arena"})).await;
    let (status, body) = http(&srv, ADMIN, "POST", "/api/shards", Some(json!({"name": "room-3", "sim": "arena"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("TOO_MANY_SHARDS")), "{body}");

    let (status, body) = http(&srv, None, "GET", "/api/shards/room-1", None).await;
    assert_eq!(status, 200);
    assert_eq!((body["name"].as_str(), body["sim"].as_str()), (Some("room-1"), Some("arena")));
    assert_eq!(body["state"]["size"], json!([50.0, 30.0]));
    assert!(body["tick"].is_u64());

    // Input: a session only; at most 3 a second per player; one player per shard here.
    let input = json!({"input": {"move": [0, 1]}});
    let (status, _) = http(&srv, None, "POST", "/api/shards/room-1/input", Some(input.clone())).await;
    assert_eq!(status, 403);
    let (status, body) = http(&srv, &dave, "POST", "/api/shards/nope/input", Some(input.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("NOT_FOUND")));
    let big = json!({"input": {"move": [0, 1], "pad": "x".repeat(5000)}});
    let (status, body) = http(&srv, &dave, "POST", "/api/shards/room-1/input", Some(big)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("VALIDATION")), "{body}");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let (status, body) = http(&srv, &dave, "POST", "/api/shards/room-1/input", Some(input.clone())).await;
        statuses.push((status, body["error"]["code"].as_str().map(String::from)));
    }
    assert_eq!(statuses[..3], [(200, None), (200, None), (200, None)]);
    assert_eq!(statuses[3], (429, Some("RATE_LIMITED".into())));
    let erin = session(&srv, "erin").await;
    let (status, body) = http(&srv, &erin, "POST", "/api/shards/room-1/input", Some(input.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("SHARD_FULL")), "{body}");
    let mut ws = connect(&srv, &erin).await;
    send(&mut ws, json!({"type": "shard_subscribe", "shard": "room-1"})).await;
    let full = next(&mut ws).await.unwrap();
    assert_eq!((full["code"].as_str(), full["ref"].as_str()), (Some("SHARD_FULL"), Some("room-1")), "{full}");
    send(&mut ws, json!({"type": "shard_subscribe", "shard": "nope"})).await;
    assert_eq!(next(&mut ws).await.unwrap()["code"], "NOT_FOUND");

    // Stop: admin only; subscribers are told; the shard is gone.
    let mut watcher = connect(&srv, ADMIN).await;
    send(&mut watcher, json!({"type": "shard_subscribe", "shard": "room-1"})).await;
    snapshot(&mut watcher, "room-1").await;
    let (status, _) = http(&srv, &dave, "DELETE", "/api/shards/room-1", None).await;
    assert_eq!(status, 403);
    let (status, body) = http(&srv, ADMIN, "DELETE", "/api/shards/room-1", None).await;
    assert_eq!((status, body), (200, json!({"stopped": "room-1"})));
    let stopped = loop {
        let f = next(&mut watcher).await.unwrap();
        if f["type"] == "error" {
            break f;
        }
    };
    assert_eq!((stopped["code"].as_str(), stopped["ref"].as_str()), (Some("SHARD_STOPPED"), Some("room-1")));
    let (status, _) = http(&srv, None, "GET", "/api/shards/room-1", None).await;
    assert_eq!(status, 404);
    let (status, _) = http(&srv, ADMIN, "DELETE", "/api/shards/room-1", None).await;
    assert_eq!(status, 404);
    start_shard(&srv, spec).await;
}

#[actix_web::test]
async fn sse_streams_snapshots_with_the_same_auth() {
    let srv = server();
    start_shard(&srv, json!({"name": "feed", "sim": "arena", "tick_hz": 20})).await;
    let (status, body) = http(&srv, None, "GET", "/api/shards/feed/connect", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("FORBIDDEN")), "anonymous callers may not connect");
    let (status, _) = http(&srv, Some("bad-token"), "GET", "/api/shards/feed/connect", None).await;
    assert_eq!(status, 401);
    let frank = session(&srv, "frank").await;
    let mut resp = client().get(srv.url(&format!("/api/shards/feed/connect?token={frank}"))).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers().get("content-type").unwrap(), "text/event-stream");
    let mut text = String::new();
    let mut ticks = Vec::new();
    while ticks.len() < 5 {
        let chunk = actix_web::rt::time::timeout(PATIENCE, resp.next()).await.unwrap().unwrap().unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            let data = event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            assert!(event.starts_with("event: snapshot\n"), "{event}");
            let frame: Value = serde_json::from_str(data).unwrap();
            assert_eq!(frame["shard"], "feed");
            ticks.push(tick(&frame));
        }
    }
    assert!(ticks.windows(2).all(|w| w[1] > w[0]), "in order: {ticks:?}");
    let (_, list) = http(&srv, None, "GET", "/api/shards", None).await;
    assert_eq!(list["shards"][0]["players"], 1, "the SSE subscriber plays as frank");
}

#[actix_web::test]
async fn manifest_shards_start_at_boot() {
    let manifest = r#"{"shards": [{"name": "lobby", "sim": "arena", "tick_hz": 10, "config": {"width": 40}},
                                  {"name": "counter", "sim": "blob"}]}"#;
    let srv = server_with(config(), manifest);
    let (status, list) = http(&srv, None, "GET", "/api/shards", None).await;
    assert_eq!(status, 200);
    let rows: Vec<(String, u64)> =
        list["shards"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap().into(), s["tick_hz"].as_u64().unwrap())).collect();
    assert_eq!(rows, [("counter".to_string(), 20), ("lobby".to_string(), 10)], "tick_hz defaults to 20");
    let (_, lobby) = http(&srv, None, "GET", "/api/shards/lobby", None).await;
    assert_eq!(lobby["state"]["size"], json!([40.0, 100.0]));
    let mut ws = connect(&srv, ADMIN).await;
    send(&mut ws, json!({"type": "shard_subscribe", "shard": "counter"})).await;
    let first = tick(&snapshot(&mut ws, "counter").await);
    snapshot_until(&mut ws, "counter", |f| tick(f) >= first + 3).await;

    // An unknown sim refuses to start, naming it.
    let bad = AppManifest::from_json(r#"{"shards": [{"name": "x", "sim": "chess"}]}"#).unwrap();
    let err = plaza::build_state_with(config(), bad).err().expect("refused").to_string();
    assert!(err.contains("unknown sim 'chess'"), "{err}");
}

#[actix_web::test]
async fn deltas_follow_a_full_snapshot_and_name_their_base() {
    let srv = server();
    start_shard(&srv, json!({"name": "d", "sim": "deltas", "tick_hz": 60})).await;
    let mut ws = connect(&srv, ADMIN).await;
    send(&mut ws, json!({"type": "shard_subscribe", "shard": "d"})).await;
    let first = next(&mut ws).await.unwrap();
    assert_eq!(first["type"], "snapshot", "a subscriber starts from a full snapshot: {first}");
    let (mut last, mut full) = (tick(&first), 0);
    for _ in 0..45 {
        let frame = next(&mut ws).await.unwrap();
        let t = tick(&frame);
        assert_eq!(t, last + 1, "every tick, in order");
        match frame["type"].as_str() {
            Some("delta") => {
                assert_eq!(frame["base"], last, "{frame}");
                assert_eq!(frame["delta"]["n"], t, "{frame}");
            }
            Some("snapshot") => {
                assert_eq!(frame["state"]["n"], t);
                full += 1;
            }
            other => panic!("unexpected frame {other:?}"),
        }
        last = t;
    }
    assert!((2..=3).contains(&full), "a full snapshot every 20 ticks, deltas between: {full} in 45");
}

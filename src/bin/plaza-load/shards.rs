//! The `shards` mode: tick punctuality and snapshot delivery of many running shards.
//!
//! Starts `--shards` `arena` shards at `--hz` (`POST /api/shards`, admin), mints a session per
//! player (`--players` per shard, users `load-<shard>-<n>`), and opens one WebSocket per player
//! (its own token), spread over `--threads` client threads; each sends `shard_subscribe` for its
//! shard and, once every socket is subscribed, a `shard_input` `{"move":[dx,dy]}` every
//! 1/`--inputs-per-sec` s for `--duration-secs`, while reading every frame. For that window it
//! prints: the server's tick lateness (how late each tick started against its fixed schedule)
//! and tick work as p50/p99 and the highest bucket reached, read from the difference of the
//! server's Prometheus histograms before and after (bucket upper bounds), plus the largest
//! lateness since the shards started; ticks run vs expected, overruns; snapshots delivered/s,
//! and ticks a subscriber missed (a gap between consecutive snapshots on one socket: every
//! reading subscriber should get every tick); inputs sent and refused; the CPU of the server
//! and of this process (`/proc`, 100 ticks/s); and the command that reproduces the run.
//!
//! Figures depend on how contended the machine is (the report prints its CPU pressure).
//! Measured on the 2-core dev machine while other builds kept its load average near 10.5:
//! `plaza-load shards --shards 100 --hz 30 --players 10 --duration-secs 10` ran 30,078 ticks
//! (100.2% of schedule, no overruns), delivered all 299,982 snapshots (29,974/s, none missed)
//! and queued 10k inputs/s, with tick lateness p50 ≤ 1.5 ms, p99 ≤ 5 ms, window max ≤ 10 ms,
//! server CPU 66% of a core. Before socket inputs went to the shard with `do_send` (a reply
//! future per input), the same run lost half the ticks to conflation on the socket thread.
//! Minutes later, with CPU pressure at 91% (runnable tasks waiting for a CPU 91% of the time),
//! the same command saw stalls of 50 ms to 1 s (p99 lateness ≤ 50-1000 ms) and 8-62% of ticks
//! conflated for the subscribers: the process was not scheduled, the tick work stayed ≤ 0.1 ms.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use clap::Args as ClapArgs;
use futures_util::future::{self, Either};
use futures_util::stream::{self, StreamExt};
use futures_util::SinkExt;
use tokio::sync::watch;

use crate::report::reproduce_command;
use crate::rng::SplitMix64;
use crate::server::{check_server, print_server_log, spawned_note, WS_MAX_PER_IP};
use crate::stats::{percent, print_kinds, Kinds};
use crate::target::{build_client, resolve_target, Target, BODY_LIMIT};

/// Sessions minted and shards started concurrently during setup.
const SETUP_CONCURRENCY: usize = 32;
/// WebSocket handshakes (connect + subscribe) in flight per client thread.
const OPEN_CONCURRENCY: usize = 64;
/// From `shard_subscribe` to the first snapshot.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(20);
/// Frames are read for this long after the window, so the last snapshots in flight are not
/// counted as missed; ticks are compared inside the window only.
const SETTLE: Duration = Duration::from_millis(300);
/// `/proc/<pid>/stat` counts CPU time in these units per second (USER_HZ on Linux).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
/// The goal in issue #9: p99 tick lateness under this with 100 shards × 30 Hz × 10 players.
const GOAL_P99_LATENESS_MS: f64 = 2.0;

#[derive(ClapArgs)]
pub struct Args {
    /// Base URL of a running server; without it a local in-memory server is started from the
    /// `plaza` binary next to this one.
    #[arg(long)]
    target: Option<String>,
    /// Arena shards started (`load-0` .. `load-<n-1>`).
    #[arg(long, default_value_t = 100)]
    shards: usize,
    /// Ticks per second of every shard.
    #[arg(long, default_value_t = 30)]
    hz: u32,
    /// Players per shard, each on its own WebSocket, subscribed and sending inputs.
    #[arg(long, default_value_t = 10)]
    players: usize,
    /// Inputs each player sends per second.
    #[arg(long, default_value_t = 10)]
    inputs_per_sec: u32,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Admin token (shards, sessions); without --target also the spawned server's token.
    #[arg(long, env = "PLAZA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Client OS threads for the sockets, each with its own actix System.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

/// What the sockets of one client thread saw in the window.
#[derive(Default)]
struct Tally {
    subscribed: u64,
    open_failed: Kinds,
    snapshots: u64,
    /// Ticks skipped between consecutive snapshots of one socket.
    missed: u64,
    inputs: u64,
    error_frames: Kinds,
    disconnects: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.subscribed += other.subscribed;
        self.open_failed.merge(other.open_failed);
        self.snapshots += other.snapshots;
        self.missed += other.missed;
        self.inputs += other.inputs;
        self.error_frames.merge(other.error_frames);
        self.disconnects += other.disconnects;
    }
}

/// The moment the window starts (all sockets subscribed) and ends, told to every thread.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Phase {
    Opening,
    Measure { from: Instant, until: Instant },
}

pub fn run(args: Args) -> Result<(), String> {
    if args.shards == 0 || args.players == 0 || args.hz == 0 || args.inputs_per_sec == 0 || args.duration_secs == 0 {
        return Err("--shards, --players, --hz, --inputs-per-sec and --duration-secs must be at least 1".into());
    }
    let threads = args.threads.clamp(1, args.shards * args.players);
    let token = args.admin_token.clone().filter(|t| !t.is_empty());
    let extra = ["--ws-max-per-ip", WS_MAX_PER_IP, "--session-rate-limit", "0"];
    let (target, mut server) = resolve_target(args.target.as_deref(), token, &extra)?;
    println!(
        "plaza-load shards: {} arena shards at {} Hz, {} players each ({} sockets on {threads} client thread(s)), \
         {} inputs/s per player, {} s window, target {}{}",
        args.shards,
        args.hz,
        args.players,
        args.shards * args.players,
        args.inputs_per_sec,
        args.duration_secs,
        target.base,
        spawned_note(&server)
    );

    let setup_began = Instant::now();
    let players = actix_web::rt::System::new().block_on(setup(&target, &args))?;
    println!("setup: {} shards started, {} sessions minted in {:.2} s", args.shards, players.len(), setup_began.elapsed().as_secs_f64());

    let ws_base = format!("{}/ws", target.base.replacen("http://", "ws://", 1));
    let (phase_tx, phase_rx) = watch::channel(Phase::Opening);
    let (ready_tx, ready_rx) = mpsc::channel::<u64>();
    let window = Duration::from_secs(args.duration_secs);
    let mut chunks: Vec<Vec<(usize, String)>> = vec![Vec::new(); threads];
    for (i, p) in players.into_iter().enumerate() {
        chunks[i % threads].push(p);
    }
    let (tally, measured) = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (t, chunk) in chunks.into_iter().enumerate() {
            let (ready, phase, url, every) =
                (ready_tx.clone(), phase_rx.clone(), ws_base.clone(), Duration::from_secs_f64(1.0 / f64::from(args.inputs_per_sec)));
            let handle = std::thread::Builder::new()
                .name(format!("shards-{t}"))
                .spawn_scoped(scope, move || client_thread(t, url, chunk, every, ready, phase))
                .map_err(|e| format!("cannot start a client thread: {e}"))?;
            handles.push(handle);
        }
        drop(ready_tx);
        let mut subscribed = 0;
        for _ in 0..threads {
            subscribed += ready_rx.recv().map_err(|_| "a client thread ended before its sockets were open".to_string())?;
        }
        println!("sockets: {subscribed} subscribed and receiving snapshots; measuring for {} s ...", args.duration_secs);
        let before = actix_web::rt::System::new().block_on(server_figures(&target))?;
        let cpu_before = (server.as_ref().and_then(|s| cpu_ticks(&s.pid().to_string())), cpu_ticks("self"));
        let from = Instant::now();
        let _ = phase_tx.send(Phase::Measure { from, until: from + window });
        std::thread::sleep(window);
        let after = actix_web::rt::System::new().block_on(server_figures(&target))?;
        let cpu_after = (server.as_ref().and_then(|s| cpu_ticks(&s.pid().to_string())), cpu_ticks("self"));
        let secs = from.elapsed().as_secs_f64();
        let mut total = Tally::default();
        for h in handles {
            total.merge(h.join().map_err(|_| "a client thread panicked".to_string())??);
        }
        Ok::<_, String>((total, (before, after, cpu_before, cpu_after, secs)))
    })?;
    let (before, after, cpu_before, cpu_after, secs) = measured;
    let server_exit = check_server(&mut server).err();

    let sockets = (args.shards * args.players) as u64;
    println!();
    println!("shards results ({:.2} s window)", secs);
    println!(
        "  sockets:          {} of {sockets} subscribed; {} disconnected",
        tally.subscribed, tally.disconnects
    );
    print_kinds("  open failures:    ", &tally.open_failed, "none");
    let lateness = after.lateness.since(&before.lateness);
    let work = after.work.since(&before.work);
    println!(
        "  tick lateness:    p50 ≤ {}  p99 ≤ {}  max ≤ {} ms in the window, n={} (server histogram buckets: start vs \
         schedule); largest since the shards started {:.3} ms",
        ms(lateness.quantile(0.5)),
        ms(lateness.quantile(0.99)),
        ms(lateness.quantile(1.0)),
        lateness.count,
        after.lateness_max_ms
    );
    println!(
        "  tick work:        p50 ≤ {}  p99 ≤ {}  max ≤ {} ms (inputs + step + snapshot + publish)",
        ms(work.quantile(0.5)),
        ms(work.quantile(0.99)),
        ms(work.quantile(1.0))
    );
    let ticks = after.ticks - before.ticks;
    let expected_ticks = args.shards as f64 * f64::from(args.hz) * secs;
    println!(
        "  ticks:            {ticks} run, {:.0} expected ({} shards × {} Hz × {:.2} s): {:.2}%; overruns {}, skipped {}",
        expected_ticks,
        args.shards,
        args.hz,
        secs,
        ticks as f64 * 100.0 / expected_ticks.max(1.0),
        after.overruns - before.overruns,
        after.skipped - before.skipped
    );
    println!(
        "  snapshots:        {} delivered, {:.0}/s; {} ticks missed by a reading subscriber ({:.4}% of {} expected)",
        tally.snapshots,
        tally.snapshots as f64 / secs,
        tally.missed,
        percent(tally.missed, tally.snapshots + tally.missed),
        tally.snapshots + tally.missed
    );
    println!(
        "  inputs:           {} sent ({:.0}/s), {} queued by the server, {} refused",
        tally.inputs,
        tally.inputs as f64 / secs,
        after.inputs - before.inputs,
        after.inputs_refused - before.inputs_refused
    );
    print_kinds("  error frames:     ", &tally.error_frames, "none");
    let cpu = |b: Option<u64>, a: Option<u64>| match (b, a) {
        (Some(b), Some(a)) => format!("{:.0}% of one core", (a - b) as f64 / CLOCK_TICKS_PER_SEC / secs * 100.0),
        _ => "unknown".into(),
    };
    println!(
        "  cpu:              server {}, this load tool {} ({} cores on this machine)",
        cpu(cpu_before.0, cpu_after.0),
        cpu(cpu_before.1, cpu_after.1),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    // Lateness is mostly the OS not running the shard threads on time: say how contended the
    // machine was (the share of time runnable tasks waited for a CPU, last 10 s).
    println!("  machine:          {}", cpu_pressure().unwrap_or_else(|| "CPU pressure unknown (/proc/pressure/cpu)".into()));
    let p99 = lateness.quantile(0.99);
    let complete = tally.missed == 0 && tally.disconnects == 0 && tally.subscribed == sockets;
    println!(
        "  goal:             p99 lateness ≤ {} ms {} {GOAL_P99_LATENESS_MS} ms, {}",
        ms(p99),
        if p99.is_some_and(|p| p * 1000.0 < GOAL_P99_LATENESS_MS) { "<" } else { "not <" },
        if complete { "every snapshot delivered to every subscriber" } else { "deliveries incomplete" }
    );
    print_server_log(&server, "  server log:       ");
    println!("  command:          {}", reproduce_command());
    match server_exit {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn ms(seconds: Option<f64>) -> String {
    seconds.map_or_else(|| "?".into(), |s| format!("{:.3}", s * 1000.0))
}

/// Starts the shards and mints every player's session: (shard index, token).
async fn setup(target: &Target, args: &Args) -> Result<Vec<(usize, String)>, String> {
    let client = build_client(target, SETUP_CONCURRENCY);
    let post = |path: String, body: serde_json::Value| {
        let req = client.post(format!("{}{path}", target.base));
        async move {
            let mut resp = req.send_json(&body).await.map_err(|e| format!("POST {path}: {e}"))?;
            let bytes = resp.body().limit(BODY_LIMIT).await.map_err(|e| format!("POST {path}: {e}"))?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("POST {path} answered {status}: {}", String::from_utf8_lossy(&bytes)));
            }
            serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| format!("POST {path}: {e}"))
        }
    };
    let started: Vec<Result<serde_json::Value, String>> = stream::iter(0..args.shards)
        .map(|i| post("/api/shards".into(), serde_json::json!({"name": format!("load-{i}"), "sim": "arena", "tick_hz": args.hz})))
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    started.into_iter().collect::<Result<Vec<_>, _>>()?;
    let players: Vec<(usize, usize)> = (0..args.shards).flat_map(|s| (0..args.players).map(move |p| (s, p))).collect();
    let minted: Vec<Result<(usize, String), String>> = stream::iter(players)
        .map(|(s, p)| {
            let session = post("/api/auth/session".into(), serde_json::json!({"user_id": format!("load-{s}-{p}")}));
            async move {
                let body = session.await?;
                let token = body["token"].as_str().ok_or("session without a token")?.to_string();
                Ok((s, token))
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect()
        .await;
    minted.into_iter().collect()
}

/// One client thread: opens its players' sockets, reports how many subscribed, then drives
/// them until the window (plus [`SETTLE`]) is over.
fn client_thread(
    thread: usize,
    url: String,
    players: Vec<(usize, String)>,
    every: Duration,
    ready: mpsc::Sender<u64>,
    phase: watch::Receiver<Phase>,
) -> Result<Tally, String> {
    let tally = Rc::new(RefCell::new(Tally::default()));
    actix_web::rt::System::new().block_on(async {
        // No cap on the connector: every socket is its own long-lived connection.
        let connector = awc::Connector::new().limit(0).timeout(SUBSCRIBE_TIMEOUT);
        let client = awc::Client::builder().connector(connector).timeout(SUBSCRIBE_TIMEOUT).finish();
        let opening = tokio::sync::Semaphore::new(OPEN_CONCURRENCY);
        let (total, attempted) = (players.len(), std::cell::Cell::new(0));
        let ready = &ready;
        // Each socket starts reading (and answering pings) as soon as it is open, while the
        // others still connect; the thread reports once every socket has been tried.
        let runs = players.into_iter().enumerate().map(|(i, (shard, token))| {
            let (client, url, tally, opening, attempted, phase) = (&client, &url, tally.clone(), &opening, &attempted, phase.clone());
            async move {
                let permit = opening.acquire().await;
                let opened = open(client, url, &token, shard).await;
                drop(permit);
                match &opened {
                    Ok(_) => tally.borrow_mut().subscribed += 1,
                    Err(e) => tally.borrow_mut().open_failed.add(e.clone(), 1),
                }
                attempted.set(attempted.get() + 1);
                if attempted.get() == total {
                    let _ = ready.send(tally.borrow().subscribed);
                }
                if let Ok(ws) = opened {
                    drive(ws, shard, every, phase, tally, SplitMix64::new(crate::rng::seed(thread, i))).await;
                }
            }
        });
        future::join_all(runs).await;
    });
    Rc::try_unwrap(tally).map(RefCell::into_inner).map_err(|_| "tally still shared".to_string())
}

type Ws = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Connects with the player's token and subscribes; answers once the first snapshot arrived.
async fn open(client: &awc::Client, url: &str, token: &str, shard: usize) -> Result<Ws, String> {
    let (_, mut ws) = client.ws(format!("{url}?token={token}")).max_frame_size(1 << 20).connect().await.map_err(|e| format!("connect: {e}"))?;
    let subscribe = format!(r#"{{"type":"shard_subscribe","shard":"load-{shard}"}}"#);
    ws.send(Message::Text(subscribe.into())).await.map_err(|e| format!("subscribe: {e}"))?;
    let first = async {
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(Frame::Text(t)) if t.starts_with(br#"{"type":"snapshot""#) => return Ok(()),
                Ok(Frame::Text(t)) => return Err(format!("subscribe answered {}", String::from_utf8_lossy(&t))),
                Ok(Frame::Ping(p)) => ws.send(Message::Pong(p)).await.map_err(|e| e.to_string())?,
                Ok(_) => {}
                Err(e) => return Err(format!("subscribe: {e}")),
            }
        }
        Err("closed before the first snapshot".to_string())
    };
    actix_web::rt::time::timeout(SUBSCRIBE_TIMEOUT, first).await.map_err(|_| "no snapshot after subscribing".to_string())??;
    Ok(ws)
}

/// The tick of a snapshot frame, read without parsing the state.
fn frame_tick(text: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"tick\":";
    let at = text.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&text[at..at + digits]).ok()?.parse().ok()
}

/// Reads every frame of one socket (counting snapshots and gaps in the window) and, during the
/// window, sends an input every `every`.
async fn drive(
    mut ws: Ws,
    shard: usize,
    every: Duration,
    mut phase: watch::Receiver<Phase>,
    tally: Rc<RefCell<Tally>>,
    mut rng: SplitMix64,
) {
    let (from, until) = loop {
        if let Phase::Measure { from, until } = *phase.borrow_and_update() {
            break (from, until);
        }
        // Keep reading (and answering pings) while the other sockets open.
        let changed = std::pin::pin!(phase.changed());
        match future::select(changed, ws.next()).await {
            Either::Left((Ok(()), _)) => {}
            Either::Left((Err(_), _)) => return,
            Either::Right((Some(Ok(Frame::Ping(p))), _)) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Either::Right((Some(Ok(_)), _)) => {}
            Either::Right(_) => {
                tally.borrow_mut().disconnects += 1;
                return;
            }
        }
    };
    // Offset each player's inputs within the interval so they do not all arrive at once.
    let mut next_input = from + every.mul_f64(rng.below(1000) as f64 / 1000.0);
    let end = until + SETTLE;
    let mut last_tick: Option<u64> = None;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let wake = if now < until { next_input.min(end) } else { end };
        let timer = std::pin::pin!(actix_web::rt::time::sleep_until(wake.into()));
        match future::select(timer, ws.next()).await {
            Either::Left(_) => {
                if Instant::now() >= next_input && Instant::now() < until {
                    let (dx, dy) = (rng.below(3) as i64 - 1, rng.below(3) as i64 - 1);
                    let input = format!(r#"{{"type":"shard_input","shard":"load-{shard}","input":{{"move":[{dx},{dy}]}}}}"#);
                    if ws.send(Message::Text(input.into())).await.is_err() {
                        tally.borrow_mut().disconnects += 1;
                        return;
                    }
                    tally.borrow_mut().inputs += 1;
                    next_input += every;
                }
            }
            Either::Right((Some(Ok(Frame::Text(t))), _)) => {
                let at = Instant::now();
                if t.starts_with(br#"{"type":"snapshot""#) {
                    let Some(tick) = frame_tick(&t) else { continue };
                    if at >= from && at < until {
                        let mut tally = tally.borrow_mut();
                        tally.snapshots += 1;
                        if let Some(last) = last_tick {
                            tally.missed += tick.saturating_sub(last + 1);
                        }
                    }
                    last_tick = Some(tick);
                } else {
                    let code = serde_json::from_slice::<serde_json::Value>(&t)
                        .ok()
                        .and_then(|v| v["code"].as_str().map(String::from))
                        .unwrap_or_else(|| String::from_utf8_lossy(&t).into_owned());
                    tally.borrow_mut().error_frames.add(code, 1);
                }
            }
            Either::Right((Some(Ok(Frame::Ping(p))), _)) => {
                let _ = ws.send(Message::Pong(p)).await;
            }
            Either::Right((Some(Ok(_)), _)) => {}
            Either::Right(_) => {
                tally.borrow_mut().disconnects += 1;
                return;
            }
        }
    }
    let _ = ws.close().await;
}

/// A Prometheus histogram as cumulative bucket counts.
#[derive(Default, Clone)]
struct Buckets {
    bounds: Vec<(f64, u64)>,
    count: u64,
}

impl Buckets {
    fn since(&self, before: &Buckets) -> Buckets {
        let old: HashMap<u64, u64> = before.bounds.iter().map(|(b, n)| (b.to_bits(), *n)).collect();
        let bounds = self.bounds.iter().map(|(b, n)| (*b, n - old.get(&b.to_bits()).copied().unwrap_or(0))).collect();
        Buckets { bounds, count: self.count - before.count }
    }

    /// The upper bound of the bucket holding quantile `q` (seconds); `None` without samples.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let want = ((self.count as f64) * q).ceil().max(1.0) as u64;
        self.bounds.iter().find(|(_, n)| *n >= want).map(|(b, _)| *b)
    }
}

/// The server's shard figures at one moment.
struct Figures {
    ticks: u64,
    overruns: u64,
    skipped: u64,
    inputs: u64,
    inputs_refused: u64,
    lateness: Buckets,
    work: Buckets,
    lateness_max_ms: f64,
}

async fn server_figures(target: &Target) -> Result<Figures, String> {
    let client = build_client(target, 1);
    let mut resp = client
        .get(format!("{}/metrics", target.base))
        .insert_header(("Accept", "text/plain"))
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    let text = resp.body().limit(BODY_LIMIT).await.map_err(|e| format!("GET /metrics: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let value = |name: &str| -> u64 {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse::<f64>().ok())).map_or(0, |v| v as u64)
    };
    let histogram = |name: &str| {
        let mut h = Buckets::default();
        let prefix = format!("{name}_bucket{{le=\"");
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix(&prefix) {
                let mut parts = rest.splitn(2, "\"} ");
                let (Some(bound), Some(n)) = (parts.next(), parts.next()) else { continue };
                let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().unwrap_or(f64::INFINITY) };
                h.bounds.push((bound, n.trim().parse().unwrap_or(0)));
            }
        }
        h.count = value(&format!("{name}_count "));
        h
    };
    let mut resp = client.get(format!("{}/metrics", target.base)).send().await.map_err(|e| format!("GET /metrics: {e}"))?;
    let json: serde_json::Value = resp.json().limit(BODY_LIMIT).await.map_err(|e| format!("GET /metrics: {e}"))?;
    Ok(Figures {
        ticks: value("plaza_shard_ticks_total "),
        overruns: value("plaza_shard_tick_overruns_total "),
        skipped: value("plaza_shard_ticks_skipped_total "),
        inputs: value("plaza_shard_inputs_total "),
        inputs_refused: value("plaza_shard_inputs_refused_total "),
        lateness: histogram("plaza_shard_tick_lateness_seconds"),
        work: histogram("plaza_shard_tick_duration_seconds"),
        lateness_max_ms: json["shards"]["tick_lateness"]["max_ms"].as_f64().unwrap_or(f64::NAN),
    })
}

/// `/proc/pressure/cpu`'s `some avg10`, as a sentence.
fn cpu_pressure() -> Option<String> {
    let text = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    let avg10 = text.lines().find(|l| l.starts_with("some"))?.split_whitespace().find_map(|f| f.strip_prefix("avg10="))?.to_string();
    Some(format!("CPU pressure {avg10}% over the last 10 s (time some runnable task waited for a CPU; /proc/pressure/cpu)"))
}

/// User + system CPU time of a process (`self` or a pid), in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tick_without_parsing() {
        assert_eq!(frame_tick(br#"{"type":"snapshot","shard":"load-3","tick":1234,"state":{}}"#), Some(1234));
        assert_eq!(frame_tick(br#"{"type":"error"}"#), None);
    }

    #[test]
    fn quantiles_from_bucket_differences() {
        let before = Buckets { bounds: vec![(0.001, 10), (0.002, 10), (f64::INFINITY, 10)], count: 10 };
        let after = Buckets { bounds: vec![(0.001, 108), (0.002, 109), (f64::INFINITY, 110)], count: 110 };
        let window = after.since(&before);
        assert_eq!(window.count, 100);
        assert_eq!(window.quantile(0.5), Some(0.001));
        assert_eq!(window.quantile(0.99), Some(0.002));
        assert_eq!(window.quantile(1.0), Some(f64::INFINITY));
    }
}

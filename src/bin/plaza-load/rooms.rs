//! The `rooms` mode: R rooms × M members over real WebSockets, each member broadcasting at f Hz.
//!
//! Mints one session per member (`POST /api/auth/session` with the admin token, user ids
//! `m<room>-<i>`), opens one WebSocket per member (`/ws?token=<its session>`, at most `--batch`
//! handshakes in flight) and joins it to `room-<r>`, waiting for `joined`. Once every member is
//! in, each one sends `{"type":"broadcast","room","event":"m","data":{"t":µs}}` at `--rate` Hz
//! for `--duration-secs`, the members' sends spread evenly over each period; `t` is the send
//! time on a clock every client thread shares, so each `room_event` read (every member reads
//! every event of its room, its own included) gives a send → receive latency. After the last
//! send it waits up to [`DRAIN_TIMEOUT`] for deliveries still in flight, then prints broadcasts
//! sent, deliveries expected (accepted broadcasts × members of the room) and received,
//! delivered messages/s, p50/p95/p99/max latency, error frames and disconnects, the server's CPU
//! (from `/proc/<pid>/stat` over the sending window) and RSS, the server's own room counters,
//! and the command that reproduces the run.
//!
//! With `--rate 0` nobody broadcasts (idle): the members are held for `--hold-secs` and the
//! server's RSS per member is printed (RSS with every member joined minus RSS before the
//! sockets opened, sessions already minted, divided by the members).

use std::cell::RefCell;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use awc::ws::{CloseCode, Frame, Message};
use clap::Args as ClapArgs;
use futures_util::future::{self, Either};
use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::probes::{check_fd_limit, clock_ticks, cpu_ticks, kib, rss_kib, FD_MARGIN};
use crate::report::reproduce_command;
use crate::server::{check_server, print_machine, print_server_log, spawned_note, WS_MAX_PER_IP};
use crate::stats::{merge_histogram, micros, new_histogram, percent, print_kinds, quantiles_ms, Kinds};
use crate::target::{build_client, resolve_target, Target, BODY_LIMIT, CONNECT_TIMEOUT};

/// After the last send, how long deliveries still in flight are waited for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// Between every member being in and the first send (so all threads start on time).
const START_DELAY: Duration = Duration::from_millis(300);
/// How often a member that has nothing to send looks at the stage.
const HOLD_POLL: Duration = Duration::from_millis(50);
/// Session requests in flight while minting.
const SESSION_CONCURRENCY: usize = 64;
/// TCP connect + upgrade, and join → joined, of one member.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Default handshakes in flight and client threads (as the `ws` mode).
const DEFAULT_BATCH: usize = 200;
const DEFAULT_THREADS: usize = 2;
/// The issue's goal for 100 rooms × 50 members × 1 msg/s: p95 below this, nothing lost.
const GOAL_P95: Duration = Duration::from_millis(25);

#[derive(ClapArgs)]
pub struct Args {
    /// Base URL of a running server (e.g. http://127.0.0.1:4321, started with a
    /// --ws-max-per-ip above the member count); without it a local in-memory server is started
    /// from the `plaza` binary next to this one.
    #[arg(long)]
    target: Option<String>,
    /// Rooms.
    #[arg(long, default_value_t = 100)]
    rooms: usize,
    /// Members per room, each on its own socket and session.
    #[arg(long, default_value_t = 50)]
    members: usize,
    /// Broadcasts per second per member; 0: idle (join, hold, memory per member).
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// How long the members broadcast, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Idle mode: seconds the members are held before the RSS is read again.
    #[arg(long, default_value_t = 2)]
    hold_secs: u64,
    /// Pid of the --target server, to read its RSS and CPU from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Admin token (mints the members' sessions); without --target it is also the spawned
    /// server's token (a random one when absent).
    #[arg(long, env = "PLAZA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Handshakes (connect + join) in flight at once, over all threads.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    batch: usize,
    /// Client OS threads for the sockets, each with its own actix System.
    #[arg(long, default_value_t = DEFAULT_THREADS)]
    threads: usize,
}

/// One member: which room, which session.
struct Seat {
    room: usize,
    token: String,
}

/// What the coordinator tells the members; it changes twice per run.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Stage {
    /// Joined; read frames and answer pings.
    Hold,
    /// Broadcast from `start` until `end`.
    Send { start: Instant, end: Instant },
    /// Close and finish.
    Stop,
}

/// What the members of one thread (then of all threads) saw and did.
struct Tally {
    /// Members joined, per room.
    joined: Vec<u64>,
    open_failed: u64,
    open_errors: Kinds,
    /// Broadcasts sent, and refused (error frames naming the room), per room.
    sent: Vec<u64>,
    refused: Vec<u64>,
    received: u64,
    hist: Histogram<u64>,
    first_send: Option<Instant>,
    last_rx: Option<Instant>,
    error_frames: Kinds,
    disconnects: u64,
    disconnect_kinds: Kinds,
}

impl Tally {
    fn new(rooms: usize) -> Result<Tally, String> {
        Ok(Tally {
            joined: vec![0; rooms],
            open_failed: 0,
            open_errors: Kinds::default(),
            sent: vec![0; rooms],
            refused: vec![0; rooms],
            received: 0,
            hist: new_histogram()?,
            first_send: None,
            last_rx: None,
            error_frames: Kinds::default(),
            disconnects: 0,
            disconnect_kinds: Kinds::default(),
        })
    }

    fn merge(&mut self, other: Tally) -> Result<(), String> {
        merge_histogram(&mut self.hist, &other.hist)?;
        for (mine, theirs) in [(&mut self.joined, other.joined), (&mut self.sent, other.sent), (&mut self.refused, other.refused)] {
            mine.iter_mut().zip(theirs).for_each(|(a, b)| *a += b);
        }
        self.open_failed += other.open_failed;
        self.open_errors.merge(other.open_errors);
        self.received += other.received;
        self.first_send = match (self.first_send, other.first_send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.last_rx = self.last_rx.max(other.last_rx);
        self.error_frames.merge(other.error_frames);
        self.disconnects += other.disconnects;
        self.disconnect_kinds.merge(other.disconnect_kinds);
        Ok(())
    }

    /// Deliveries every accepted broadcast owes: one per member of its room.
    fn expected(&self) -> u64 {
        (0..self.sent.len()).map(|r| self.sent[r].saturating_sub(self.refused[r]) * self.joined[r]).sum()
    }
}

/// Shared by every client thread and the coordinator.
struct Shared {
    /// The clock the `t` of every broadcast is measured on.
    epoch: Instant,
    received: AtomicU64,
    rooms: usize,
}

pub fn run(args: Args) -> Result<(), String> {
    if args.rooms == 0 || args.members == 0 {
        return Err("--rooms and --members must be at least 1".into());
    }
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return Err("--rate must be a number of broadcasts per second, 0 or more".into());
    }
    if args.batch == 0 || args.threads == 0 || (args.rate > 0.0 && args.duration_secs == 0) {
        return Err("--batch, --threads and --duration-secs must be at least 1".into());
    }
    let total = args.rooms * args.members;
    let threads = args.threads.min(total);
    let fd_needed = total as u64 + FD_MARGIN;
    check_fd_limit("this process", "self", fd_needed)?;
    let token = args.admin_token.clone().filter(|t| !t.is_empty());
    let (members, rooms) = (args.members.to_string(), args.rooms.to_string());
    let extra = ["--ws-max-per-ip", WS_MAX_PER_IP, "--room-max-members", &members, "--room-max-rooms", &rooms];
    let (target, mut server) = resolve_target(args.target.as_deref(), token, &extra)?;
    if target.token.is_none() {
        return Err("--admin-token is needed with --target (it mints the members' sessions)".into());
    }
    let pid = server.as_ref().map(|s| s.pid()).or(args.server_pid);
    if let Some(pid) = pid {
        check_fd_limit("the plaza server", &pid.to_string(), fd_needed)?;
    }
    let idle = args.rate == 0.0;
    println!(
        "plaza-load rooms: {} rooms × {} members = {total} sockets on {threads} client thread(s), {}, target {}{}",
        args.rooms,
        args.members,
        if idle { "idle".to_string() } else { format!("{} broadcasts/s per member for {} s", args.rate, args.duration_secs) },
        target.base,
        spawned_note(&server)
    );

    let rss_start = pid.and_then(rss_kib);
    let minting = Instant::now();
    let seats = mint_sessions(&target, args.rooms, args.members)?;
    println!("minted {} sessions in {:.2} s", seats.len(), minting.elapsed().as_secs_f64());
    let rss_sessions = pid.and_then(rss_kib);

    let shared = Shared { epoch: Instant::now(), received: AtomicU64::new(0), rooms: args.rooms };
    let url = ws_base(&target);
    let (stage_tx, stage_rx) = watch::channel(Stage::Hold);
    let (ready_tx, ready_rx) = mpsc::channel::<Vec<u64>>();
    let opening = Instant::now();
    let batch = args.batch.div_ceil(threads);
    let outcome = std::thread::scope(|scope| -> Result<_, String> {
        let stage_tx = stage_tx;
        let mut handles = Vec::new();
        for (t, chunk) in seats.chunks(seats.len().div_ceil(threads)).enumerate() {
            let (ready, stage, shared, url) = (ready_tx.clone(), stage_rx.clone(), &shared, url.as_str());
            let rate = args.rate;
            let handle = std::thread::Builder::new()
                .name(format!("room-{t}"))
                .spawn_scoped(scope, move || client_thread(chunk, url, batch, rate, shared, ready, stage))
                .map_err(|e| format!("cannot start a client thread: {e}"))?;
            handles.push(handle);
        }
        drop(ready_tx);
        let mut joined = vec![0u64; args.rooms];
        for per_room in ready_rx.iter().take(handles.len()) {
            joined.iter_mut().zip(per_room).for_each(|(a, b)| *a += b);
        }
        let in_rooms: u64 = joined.iter().sum();
        let took = opening.elapsed();
        println!("{in_rooms} of {total} members joined in {:.2} s (at most {} handshakes in flight)", took.as_secs_f64(), args.batch);
        let rss_joined = pid.and_then(rss_kib);
        let mut window = None;
        if idle {
            std::thread::sleep(Duration::from_secs(args.hold_secs));
        } else if in_rooms > 0 {
            let start = Instant::now() + START_DELAY;
            let end = start + Duration::from_secs(args.duration_secs);
            let _ = stage_tx.send(Stage::Send { start, end });
            std::thread::sleep(start.saturating_duration_since(Instant::now()));
            let cpu_start = (pid.and_then(cpu_ticks), cpu_ticks(std::process::id()), load_average());
            println!("broadcasting for {} s ...", args.duration_secs);
            std::thread::sleep(end.saturating_duration_since(Instant::now()));
            let cpu_end = (pid.and_then(cpu_ticks), cpu_ticks(std::process::id()), load_average());
            let rss_end = pid.and_then(rss_kib);
            window = Some((start, end, (cpu_start, cpu_end), rss_end));
        }
        let rss_held = pid.and_then(rss_kib);
        // The drain: until the deliveries stop growing towards what is owed, or the timeout.
        let drain_started = Instant::now();
        if window.is_some() {
            let mut last = u64::MAX;
            while drain_started.elapsed() < DRAIN_TIMEOUT {
                std::thread::sleep(DRAIN_POLL * 10);
                let now = shared.received.load(Ordering::Relaxed);
                if now == last {
                    break;
                }
                last = now;
            }
        }
        let drained = drain_started.elapsed();
        let _ = stage_tx.send(Stage::Stop);
        let mut tally = Tally::new(args.rooms)?;
        for handle in handles {
            match handle.join() {
                Ok(Ok(t)) => tally.merge(t)?,
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err("a client thread panicked".into()),
            }
        }
        Ok((tally, took, rss_joined, rss_held, window, drained))
    })?;
    let (tally, took, rss_joined, rss_held, window, drained) = outcome;
    let server_exit = check_server(&mut server).err();
    let counters = actix_web::rt::System::new().block_on(room_counters(&target));

    println!();
    println!("rooms results");
    let joined: u64 = tally.joined.iter().sum();
    println!(
        "  members:          {total} requested, {joined} joined in {:.2} s (sessions minted before), {} failed",
        took.as_secs_f64(),
        tally.open_failed
    );
    for (kind, n) in tally.open_errors.iter() {
        println!("                      {n} x {kind}");
    }
    if let Some((start, end, cpu, rss_end)) = window {
        let secs = end.duration_since(start).as_secs_f64();
        let sent: u64 = tally.sent.iter().sum();
        let refused: u64 = tally.refused.iter().sum();
        let expected = tally.expected();
        println!(
            "  broadcasts:       {sent} sent ({:.0}/s, asked {:.0}/s), {refused} refused",
            sent as f64 / secs,
            args.rate * joined as f64
        );
        println!(
            "  deliveries:       expected {expected} (accepted broadcasts × members of their room), received {} \
             ({:.3}%), missing {}",
            tally.received,
            percent(tally.received, expected),
            expected.saturating_sub(tally.received)
        );
        let span = match (tally.first_send, tally.last_rx) {
            (Some(first), Some(last)) => last.saturating_duration_since(first),
            _ => Duration::ZERO,
        };
        println!(
            "  delivered msgs/s: {:.0} (received ÷ {:.2} s from the first send to the last frame read)",
            tally.received as f64 / span.as_secs_f64().max(1e-9),
            span.as_secs_f64()
        );
        println!(
            "  latency:          {}, n={} (broadcast sent → room_event read, every member)",
            quantiles_ms(&tally.hist, &[0.5, 0.95, 0.99]),
            tally.hist.len()
        );
        let ((server_a, client_a, load_a), (server_b, client_b, load_b)) = cpu;
        let share = |a: Option<u64>, b: Option<u64>| {
            a.zip(b).map(|(a, b)| {
                let used = b.saturating_sub(a) as f64 / clock_ticks() as f64;
                format!("{used:.2} s over {secs:.2} s = {:.0}% of one core", used / secs * 100.0)
            })
        };
        println!("  server CPU:       {}", share(server_a, server_b).unwrap_or_else(|| "unknown (no server pid)".into()));
        println!("  client CPU:       {} (this load tool)", share(client_a, client_b).unwrap_or_else(|| "unknown".into()));
        println!(
            "  machine load:     {} at the start of the sending, {} at the end (1-minute load average; {} cores)",
            load_a.unwrap_or_else(|| "?".into()),
            load_b.unwrap_or_else(|| "?".into()),
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
        if let (Some(before), Some(after)) = (rss_joined, rss_end) {
            println!("  server RSS:       {} with everyone joined, {} at the end of the sending", kib(before), kib(after));
        }
        if !tally.hist.is_empty() {
            let p95 = Duration::from_micros(tally.hist.value_at_quantile(0.95));
            let complete = tally.received >= expected && tally.disconnects == 0 && refused == 0;
            println!(
                "  goal:             p95 {:.2} ms {} {} ms, {}{}",
                p95.as_secs_f64() * 1000.0,
                if p95 < GOAL_P95 { "<" } else { "≥" },
                GOAL_P95.as_millis(),
                if complete { "nothing lost" } else { "deliveries incomplete" },
                if p95 < GOAL_P95 && complete { ": met" } else { ": not met" }
            );
        }
        println!("  drain:            waited {:.2} s after the last send (at most {} s)", drained.as_secs_f64(), DRAIN_TIMEOUT.as_secs());
    }
    match (rss_start, rss_sessions, rss_joined) {
        (Some(start), Some(sessions), Some(joined_rss)) => {
            let delta = joined_rss.saturating_sub(sessions);
            println!(
                "  server RSS:       {} at start, {} with {} sessions, {} with every member joined: {:.2} KiB per member \
                 (socket + connection actor + room membership; sessions excluded){}",
                kib(start),
                kib(sessions),
                seats.len(),
                kib(joined_rss),
                delta as f64 / joined.max(1) as f64,
                rss_held.map_or_else(String::new, |h| format!("; {} after the hold", kib(h)))
            );
        }
        _ => println!("  server RSS:       unknown: reading it needs the server's pid (--server-pid PID)"),
    }
    match counters {
        Ok(c) => println!("  server counters:  {c}"),
        Err(e) => println!("  server counters:  unavailable ({e})"),
    }
    print_kinds("  error frames:     ", &tally.error_frames, "none");
    println!("  disconnects:      {}", tally.disconnects);
    for (kind, n) in tally.disconnect_kinds.iter() {
        println!("                      {n} x {kind}");
    }
    print_server_log(&server, "  server log:       ");
    print_machine(&server, "  ");
    println!("  command:          {}", reproduce_command());
    if let Some(s) = server.take() {
        s.stop();
    }
    if let Some(e) = server_exit {
        return Err(e);
    }
    if joined == 0 {
        return Err("no member could join (see the errors above)".into());
    }
    Ok(())
}

/// `ws://HOST:PORT/ws?token=` (the member's token follows).
fn ws_base(target: &Target) -> String {
    format!("ws://{}/ws?token=", target.base.strip_prefix("http://").unwrap_or(&target.base))
}

/// One session per member, minted by the admin.
fn mint_sessions(target: &Target, rooms: usize, members: usize) -> Result<Vec<Seat>, String> {
    actix_web::rt::System::new().block_on(async {
        let client = build_client(target, SESSION_CONCURRENCY);
        let url = format!("{}/api/auth/session", target.base);
        let seats: Vec<Result<Seat, String>> = stream::iter((0..rooms).flat_map(|r| (0..members).map(move |i| (r, i))))
            .map(|(room, i)| {
                let (client, url) = (&client, &url);
                async move {
                    let mut resp = client
                        .post(url.as_str())
                        .send_json(&json!({"user_id": format!("m{room}-{i}")}))
                        .await
                        .map_err(|e| format!("minting a session: {e}"))?;
                    let body: Value = resp.json().limit(BODY_LIMIT).await.map_err(|e| format!("minting a session: {e}"))?;
                    let token = body["token"].as_str().ok_or_else(|| format!("minting a session: HTTP {}: {body}", resp.status()))?;
                    Ok(Seat { room, token: token.to_string() })
                }
            })
            .buffered(SESSION_CONCURRENCY)
            .collect()
            .await;
        seats.into_iter().collect()
    })
}

/// One client thread: its own actix System; opens and joins its members, reports how many per
/// room, then runs them until told to stop.
fn client_thread(
    seats: &[Seat],
    url: &str,
    batch: usize,
    rate: f64,
    shared: &Shared,
    ready: mpsc::Sender<Vec<u64>>,
    stage: watch::Receiver<Stage>,
) -> Result<Tally, String> {
    let tally = RefCell::new(Tally::new(shared.rooms)?);
    actix_web::rt::System::new().block_on(async {
        let client = awc::Client::builder()
            .connector(awc::Connector::new().limit(0).timeout(CONNECT_TIMEOUT))
            .timeout(HANDSHAKE_TIMEOUT)
            .finish();
        let opened = RefCell::new(Vec::with_capacity(seats.len()));
        stream::iter(seats.iter().enumerate())
            .for_each_concurrent(batch, |(i, seat)| {
                let (client, opened, tally) = (&client, &opened, &tally);
                async move {
                    match actix_web::rt::time::timeout(HANDSHAKE_TIMEOUT, open_member(client, url, seat)).await {
                        Ok(Ok(framed)) => {
                            tally.borrow_mut().joined[seat.room] += 1;
                            opened.borrow_mut().push((i, seat.room, framed));
                        }
                        Ok(Err(e)) => {
                            let mut t = tally.borrow_mut();
                            t.open_failed += 1;
                            t.open_errors.add(e, 1);
                        }
                        Err(_) => {
                            let mut t = tally.borrow_mut();
                            t.open_failed += 1;
                            t.open_errors.add(format!("not joined within {} s", HANDSHAKE_TIMEOUT.as_secs()), 1);
                        }
                    }
                }
            })
            .await;
        let _ = ready.send(tally.borrow().joined.clone());
        let count = seats.len().max(1);
        let members = opened.into_inner().into_iter().map(|(i, room, framed)| {
            // Spread the members' sends evenly over one period.
            let phase = if rate > 0.0 { Duration::from_secs_f64(i as f64 / count as f64 / rate) } else { Duration::ZERO };
            member(framed, room, phase, rate, shared, &tally, stage.clone())
        });
        future::join_all(members).await;
    });
    Ok(tally.into_inner())
}

type WsFramed = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Connects one member and joins its room; done at `joined`.
async fn open_member(client: &awc::Client, url: &str, seat: &Seat) -> Result<WsFramed, String> {
    let (_, mut framed) = client.ws(format!("{url}{}", seat.token)).connect().await.map_err(|e| format!("connect: {e}"))?;
    send(&mut framed, json!({"type": "join", "room": format!("room-{}", seat.room)}).to_string()).await?;
    loop {
        match framed.next().await {
            Some(Ok(Frame::Text(text))) => {
                let frame: Value = serde_json::from_slice(&text).map_err(|e| format!("unparsable frame: {e}"))?;
                match frame["type"].as_str() {
                    Some("joined") => return Ok(framed),
                    Some("error") => return Err(format!("join refused: {}: {}", frame["code"], frame["message"])),
                    _ => {}
                }
            }
            Some(Ok(Frame::Ping(p))) => pong(&mut framed, p).await?,
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("protocol error while joining: {e}")),
            None => return Err("closed while joining".into()),
        }
    }
}

async fn send(framed: &mut WsFramed, text: String) -> Result<(), String> {
    write(framed, Message::Text(text.into())).await
}

async fn pong(framed: &mut WsFramed, payload: actix_web::web::Bytes) -> Result<(), String> {
    write(framed, Message::Pong(payload)).await
}

async fn write(framed: &mut WsFramed, message: Message) -> Result<(), String> {
    Pin::new(&mut *framed).write(message).map_err(|e| format!("encoding a frame: {e}"))?;
    std::future::poll_fn(|cx| Pin::new(&mut *framed).flush::<Message>(cx)).await.map_err(|e| format!("sending a frame: {e}"))
}

/// One joined member for the rest of the run: reads every frame (answering pings, timing
/// `room_event`s) and, in the sending stage, broadcasts on its schedule.
async fn member(
    mut framed: WsFramed,
    room: usize,
    phase: Duration,
    rate: f64,
    shared: &Shared,
    tally: &RefCell<Tally>,
    stage: watch::Receiver<Stage>,
) {
    let period = if rate > 0.0 { Duration::from_secs_f64(1.0 / rate) } else { Duration::MAX };
    let room_name = format!("room-{room}");
    let mut sent: u32 = 0;
    // One timer for the member's whole life, moved to each new wake-up (not one per frame).
    let mut sleep = pin!(actix_web::rt::time::sleep(HOLD_POLL));
    let ended = loop {
        let now = Instant::now();
        let (next_send, stop) = match *stage.borrow() {
            Stage::Stop => (None, true),
            Stage::Hold => (None, false),
            Stage::Send { start, end } => {
                let due = start + phase + period.saturating_mul(sent);
                (if due < end { Some(due) } else { None }, false)
            }
        };
        if stop {
            break None;
        }
        let wake = match next_send {
            Some(due) => due.into(),
            // Holding: look at the stage again within HOLD_POLL.
            None if sleep.deadline() <= now.into() => (now + HOLD_POLL).into(),
            None => sleep.deadline(),
        };
        if sleep.deadline() != wake {
            sleep.as_mut().reset(wake);
        }
        match future::select(sleep.as_mut(), framed.next()).await {
            Either::Left(_) => {
                let Some(due) = next_send else { continue };
                let t = micros(Instant::now().saturating_duration_since(shared.epoch));
                let frame = format!(r#"{{"type":"broadcast","room":"{room_name}","event":"m","data":{{"t":{t}}}}}"#);
                sent += 1;
                {
                    let mut tally = tally.borrow_mut();
                    tally.sent[room] += 1;
                    tally.first_send = Some(tally.first_send.map_or(due, |f| f.min(due)));
                }
                if let Err(e) = send(&mut framed, frame).await {
                    break Some(e);
                }
            }
            Either::Right((item, _)) => match item {
                Some(Ok(Frame::Text(text))) => on_text(&text, shared, tally),
                Some(Ok(Frame::Ping(p))) => {
                    if let Err(e) = pong(&mut framed, p).await {
                        break Some(e);
                    }
                }
                Some(Ok(Frame::Close(reason))) => break Some(format!("closed by the server: {reason:?}")),
                Some(Ok(_)) => {}
                Some(Err(e)) => break Some(format!("protocol error: {e}")),
                None => break Some("connection closed by the server (EOF)".into()),
            },
        }
    };
    match ended {
        Some(why) => {
            let mut t = tally.borrow_mut();
            t.disconnects += 1;
            t.disconnect_kinds.add(why, 1);
        }
        None => {
            let close = write(&mut framed, Message::Close(Some(CloseCode::Normal.into())));
            let _ = actix_web::rt::time::timeout(CLOSE_TIMEOUT, close).await;
        }
    }
}

/// A frame read by a member: a `room_event` is timed cheaply from its `"data":{"t":µs}`;
/// error frames are counted (and charged to the room they name).
fn on_text(text: &[u8], shared: &Shared, tally: &RefCell<Tally>) {
    const EVENT: &[u8] = br#"{"type":"room_event""#;
    const T: &[u8] = br#""data":{"t":"#;
    if text.starts_with(EVENT) {
        let Some(at) = text.windows(T.len()).position(|w| w == T) else { return };
        let digits = &text[at + T.len()..];
        let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
        let Some(t) = std::str::from_utf8(&digits[..end]).ok().and_then(|d| d.parse::<u64>().ok()) else { return };
        let now = Instant::now();
        let sent = shared.epoch + Duration::from_micros(t);
        let mut tally = tally.borrow_mut();
        tally.received += 1;
        tally.hist.saturating_record(micros(now.saturating_duration_since(sent)));
        tally.last_rx = Some(tally.last_rx.map_or(now, |l| l.max(now)));
        shared.received.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Ok(frame) = serde_json::from_slice::<Value>(text) else { return };
    if frame["type"] == "error" {
        let mut tally = tally.borrow_mut();
        tally.error_frames.add(format!("{}: {}", frame["code"].as_str().unwrap_or("?"), frame["message"].as_str().unwrap_or("?")), 1);
        let room = frame["ref"].as_str().and_then(|r| r.strip_prefix("room-")).and_then(|r| r.parse::<usize>().ok());
        if let Some(r) = room.filter(|r| *r < tally.refused.len()) {
            tally.refused[r] += 1;
        }
    }
}

/// The 1-minute load average (`/proc/loadavg`): how busy the machine was besides this run.
fn load_average() -> Option<String> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next().map(String::from)
}

/// The server's own room counters from `/metrics`.
async fn room_counters(target: &Target) -> Result<String, String> {
    let client = build_client(target, 1);
    let mut resp = client.get(format!("{}/metrics", target.base)).send().await.map_err(|e| format!("GET /metrics: {e}"))?;
    let body: Value = resp.json().limit(BODY_LIMIT).await.map_err(|e| format!("GET /metrics: {e}"))?;
    let r = &body["rooms"];
    Ok(format!(
        "events in {}, frames out {}, slow members dropped {}, rooms {}, members {}",
        r["events_in"], r["events_out"], r["slow_members_dropped"], r["active"], r["members"]
    ))
}

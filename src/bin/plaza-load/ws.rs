//! The `ws` mode: live fan-out latency to many WebSocket subscribers.
//!
//! Opens `--subscribers` WebSockets to `/ws?token=<admin token>` (at most `--batch` handshakes
//! in flight), sends `{"type":"subscribe","id":"s","entity":"Bench"}` on each and waits for every
//! `{"type":"subscribed",...}` reply, printing how long connect + subscribe took.
//! The `pubsub` mode is the same run over pub/sub: each socket sends
//! `{"type":"pubsub_subscribe","topic":"bench"}`, and the writer publishes
//! `{"topic":"bench","message":{"data":{"n":k}}}` to `POST /api/pubsub/publish` instead of
//! inserting rows; latency is then publish-sent → frame-read (no commit involved). Then an
//! open-loop writer inserts `Bench` rows at a steady `--writes-per-sec` for `--duration-secs`
//! (`POST /api/entities/Bench`, `{"title":"bench <k>","n":k,"done":false}`), remembering when
//! each `k` was sent. Every socket receives one `change` frame per insert; its latency is the time
//! from the POST being sent to the frame being read, so it includes the request's handling and
//! commit: a superset of commit → delivery. After the last write it waits up to
//! [`DRAIN_TIMEOUT`] for in-flight deliveries, then prints writes/s achieved, deliveries expected
//! (ok writes × subscribed sockets) and received, delivered messages/s, p50/p95/p99/max latency,
//! error frames (such as `SLOW_CONSUMER`) and disconnects, the server's own commit → socket
//! figures from `/metrics`, the server's CPU time per delivered frame (`/proc/<pid>/stat` over
//! the writes and the drain), and the command that reproduces the run.
//!
//! Each socket needs a file descriptor on both sides: the tool raises its own soft open-file
//! limit towards what the run needs (at most the hard limit; the spawned server inherits it)
//! and refuses to start, naming `ulimit -n`, when that is not enough. `--server-workers N`
//! gives the spawned server N HTTP workers (the threads the sockets live on).

use std::cell::RefCell;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use awc::http::header;
use clap::Args as ClapArgs;
use futures_util::future::{self, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;

use crate::deliveries::Deliveries;
use crate::floor;
use crate::fleet::{print_open_errors, run_fleet, ws_url, Channel, FleetSpec, Stage, DEFAULT_WS_BATCH, DEFAULT_WS_THREADS, PUBSUB_TOPIC};
use crate::probes::{check_fd_limit, raise_fd_limit, CpuMeter, FD_MARGIN};
use crate::report::{reproduce_command, shell_quote};
use crate::server::{check_server, print_machine, print_server_log, spawned_note, WS_MAX_PER_IP};
use crate::stats::{micros, new_histogram, percent, print_kinds, quantiles_ms, Kinds};
use crate::target::{build_client, resolve_target, BODY_LIMIT};

/// After the last write, how long deliveries still in flight are waited for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the drain wait looks at the delivery count.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// POSTs of the `ws` writer in flight at once; past this the writer waits (and falls behind).
const MAX_WRITES_IN_FLIGHT: usize = 1024;
/// Most rows the `ws` writer inserts in one run (writes/s × duration).
const MAX_WRITES: u64 = 10_000_000;
/// The figure the issue asks for: p99 delivery latency with 1,000 subscribers.
const GOAL_P99: Duration = Duration::from_millis(25);

#[derive(ClapArgs)]
pub struct Args {
    /// Base URL of a running server (e.g. http://127.0.0.1:4321); without it a local
    /// in-memory server is started from the `plaza` binary next to this one.
    #[arg(long)]
    target: Option<String>,
    /// WebSockets opened, each subscribed to every `Bench` change.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Inserts per second, paced open loop (they do not wait for each other).
    #[arg(long, default_value_t = 100)]
    writes_per_sec: u64,
    /// How long the writer runs, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Admin token: `?token=` on the sockets and bearer token on the writes; without --target
    /// it is also the spawned server's token (a random one when absent).
    #[arg(long, env = "PLAZA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Socket handshakes (connect + subscribe) in flight at once, over all threads.
    #[arg(long, default_value_t = DEFAULT_WS_BATCH)]
    batch: usize,
    /// Client OS threads for the sockets, each with its own actix System.
    #[arg(long, default_value_t = DEFAULT_WS_THREADS)]
    threads: usize,
    /// `--workers` (HTTP worker threads, which also run the sockets) for the spawned server;
    /// its default is half the cores.
    #[arg(long)]
    server_workers: Option<usize>,
    /// First measure the floor: the same sockets, rate and frame size over bare loopback TCP
    /// (one sender thread per server worker, one reader per client thread), printed beside
    /// Plaza's latency.
    #[arg(long)]
    floor: bool,
}

pub fn run(args: Args) -> Result<(), String> {
    run_on(args, Channel::Changes)
}

/// The `pubsub` mode: the same run with a pub/sub topic instead of `Bench` changes.
pub fn run_pubsub(args: Args) -> Result<(), String> {
    run_on(args, Channel::PubSub)
}

fn run_on(args: Args, channel: Channel) -> Result<(), String> {
    let mode = if channel == Channel::PubSub { "pubsub" } else { "ws" };
    if args.subscribers == 0 {
        return Err("--subscribers must be at least 1".into());
    }
    if args.writes_per_sec == 0 {
        return Err("--writes-per-sec must be at least 1".into());
    }
    if args.duration_secs == 0 {
        return Err("--duration-secs must be at least 1".into());
    }
    if args.batch == 0 || args.threads == 0 {
        return Err("--batch and --threads must be at least 1".into());
    }
    let writes = args.writes_per_sec.saturating_mul(args.duration_secs);
    if writes > MAX_WRITES {
        return Err(format!("--writes-per-sec × --duration-secs is {writes}; at most {MAX_WRITES} writes per run"));
    }
    let threads = args.threads.min(args.subscribers);
    let fd_needed = args.subscribers as u64 + MAX_WRITES_IN_FLIGHT as u64 + FD_MARGIN;
    raise_fd_limit(fd_needed);
    check_fd_limit("this process", "self", fd_needed)?;
    let floor = if args.floor {
        raise_fd_limit(2 * args.subscribers as u64 + FD_MARGIN);
        let senders = args.server_workers.unwrap_or_else(crate::ceiling::default_workers).max(1);
        println!(
            "floor: {} loopback TCP sockets, {senders} sender thread(s), {threads} reader thread(s), {} writes/s of {} bytes for {} s ...",
            args.subscribers,
            args.writes_per_sec,
            floor::FRAME_BYTES,
            args.duration_secs
        );
        let spec = floor::Spec { sockets: args.subscribers, senders, readers: threads, writes_per_sec: args.writes_per_sec, writes };
        let measured = floor::measure(&spec)?;
        println!("floor: {}", measured.summary());
        Some((senders, measured))
    } else {
        None
    };
    let token = args.admin_token.clone().filter(|t| !t.is_empty());
    let workers = args.server_workers.map(|w| w.to_string());
    let mut extra = vec!["--ws-max-per-ip", WS_MAX_PER_IP];
    if let Some(w) = &workers {
        extra.extend(["--workers", w.as_str()]);
    }
    let (target, mut server) = resolve_target(args.target.as_deref(), token, &extra)?;
    if let Some(s) = &server {
        check_fd_limit("the plaza server", &s.pid().to_string(), fd_needed)?;
    }
    let deliveries = Deliveries::new(writes as usize);
    let spec = FleetSpec {
        url: ws_url(&target),
        subscribe: true,
        channel,
        batch_per_thread: args.batch.div_ceil(threads),
        deliveries: Some(&deliveries),
        sample_every: 0,
    };

    println!(
        "plaza-load {mode}: {} subscribers on {threads} client thread(s), {} writes/s for {} s, target {}{}",
        args.subscribers,
        args.writes_per_sec,
        args.duration_secs,
        target.base,
        spawned_note(&server)
    );

    let server_pid = server.as_ref().map(|s| s.pid());
    let (opened, fleet, writer) = run_fleet(&spec, args.subscribers, threads, |opened| {
        println!(
            "connect + subscribe: {} of {} sockets subscribed in {:.2} s (at most {} handshakes in flight)",
            opened.sockets,
            args.subscribers,
            opened.took.as_secs_f64(),
            args.batch
        );
        if opened.sockets == 0 {
            return (Stage::Stop, None);
        }
        println!("writing {writes} {} at {} writes/s ...", if channel == Channel::PubSub { "messages" } else { "rows" }, args.writes_per_sec);
        let cpu = server_pid.map(CpuMeter::start);
        let written = actix_web::rt::System::new().block_on(async {
            let client = build_client(&target, MAX_WRITES_IN_FLIGHT);
            write_at_rate(&client, &target.base, channel, args.writes_per_sec, writes, &deliveries).await
        });
        let drained = match &written {
            Ok(w) => drain_deliveries(&deliveries, w.ok * opened.sockets as u64),
            Err(_) => Duration::ZERO,
        };
        let cpu_secs = cpu.and_then(|c| c.used_secs());
        (Stage::Stop, Some((written, drained, cpu_secs)))
    })?;
    // A server that died is reported after the figures, which show what the sockets saw.
    let server_exit = check_server(&mut server).err();
    let fanout = actix_web::rt::System::new().block_on(async {
        let client = build_client(&target, 1);
        server_fanout(&client, &target.base).await
    });

    println!();
    println!("{mode} results");
    println!(
        "  subscribers:      {} requested, {} subscribed in {:.2} s (connect + subscribe), {} failed to open",
        args.subscribers,
        opened.sockets,
        opened.took.as_secs_f64(),
        fleet.open_failed
    );
    print_open_errors(&fleet, "  ");
    let Some((written, drained, cpu_secs)) = writer else {
        print_server_log(&server, "  server log:       ");
        return Err(server_exit.unwrap_or_else(|| {
            "no socket could be opened and subscribed, so nothing was written (see the errors above)".into()
        }));
    };
    let written = written?;
    let write_secs = written.window(args.writes_per_sec).as_secs_f64();
    println!(
        "  writes:           {} sent, {} ok, {} failed; {:.1} writes/s achieved (asked {}/s): ok ÷ {:.2} s from the \
         first to the last send plus one interval",
        written.sent,
        written.ok,
        written.errors,
        written.ok as f64 / write_secs.max(1e-9),
        args.writes_per_sec,
        write_secs
    );
    for (kind, n) in written.error_kinds.iter() {
        println!("                      {n} x {kind}");
    }
    let what = if channel == Channel::PubSub { "publish latency:" } else { "insert latency: " };
    println!("  {what}  {} (POST sent → response)", quantiles_ms(&written.hist, &[0.5, 0.99]));
    let expected = written.ok * opened.sockets as u64;
    println!(
        "  deliveries:       expected {expected} ({} ok writes × {} sockets), received {} ({:.3}%), missing {}, unmatched {}",
        written.ok,
        opened.sockets,
        fleet.received,
        percent(fleet.received, expected),
        expected.saturating_sub(fleet.received),
        fleet.unmatched
    );
    println!("  per socket:       min {}, max {} {} frames", fleet.per_socket_min(), fleet.per_socket_max, if channel == Channel::PubSub { "pubsub" } else { "change" });
    let delivery_span = match (written.first_send, fleet.last_rx) {
        (Some(first), Some(last)) => last.saturating_duration_since(first),
        _ => Duration::ZERO,
    };
    println!(
        "  delivered msgs/s: {:.0} (received ÷ {:.2} s from the first write sent to the last frame read)",
        fleet.received as f64 / delivery_span.as_secs_f64().max(1e-9),
        delivery_span.as_secs_f64()
    );
    println!(
        "  latency:          {}, n={} (write-send → delivery)",
        quantiles_ms(&fleet.hist, &[0.5, 0.95, 0.99]),
        fleet.hist.len()
    );
    if channel == Channel::PubSub {
        println!("                    measured from just before the publish POST is sent to the pubsub frame being read");
    } else {
        println!(
            "                    measured from just before the POST is sent to the change frame being read, so it \
             includes the request's handling and commit: a superset of commit → delivery"
        );
    }
    if let Some((senders, floor)) = &floor {
        println!(
            "  floor:            {} (bare loopback TCP, {senders} sender thread(s), same sockets, rate and frame size; \
             measured first in this run)",
            floor.summary()
        );
        if let Some(p99) = (!fleet.hist.is_empty()).then(|| fleet.hist.value_at_quantile(0.99) as f64 / 1000.0) {
            println!("                    Plaza p99 ÷ floor p99 = {:.2}", p99 / floor.quantile_ms(0.99).max(1e-9));
        }
    }
    match &fanout {
        // The server's fan-out histogram is the change log's; pub/sub delivery is timed above.
        _ if channel == Channel::PubSub => {}
        Ok(f) => println!(
            "  server fan-out:   {} frames, mean {:.2} ms, p50 ≤ {} ms, p99 ≤ {} ms (commit → frame handed to the socket, \
             /metrics buckets{}); slow consumers dropped {}",
            f.count,
            f.mean_ms,
            f.p50_ms,
            f.p99_ms,
            if server.is_some() { "" } else { ", since the server started" },
            f.slow_consumers
        ),
        Err(e) => println!("  server fan-out:   unavailable ({e})"),
    }
    match cpu_secs {
        Some(secs) => println!(
            "  server CPU:       {secs:.2} s over the writes and drain = {} µs per delivered frame, {} µs per write \
             (/proc/<pid>/stat user + system)",
            if fleet.received > 0 { format!("{:.2}", secs * 1e6 / fleet.received as f64) } else { "?".into() },
            if written.ok > 0 { format!("{:.0}", secs * 1e6 / written.ok as f64) } else { "?".into() }
        ),
        None => println!("  server CPU:       unknown (external server)"),
    }
    print_kinds("  error frames:     ", &fleet.error_frames, "none");
    println!(
        "  disconnects:      {} ({} sockets open until the end); server pings answered: {}",
        fleet.disconnects, fleet.alive_at_end, fleet.pings_answered
    );
    for (kind, n) in fleet.disconnect_kinds.iter() {
        println!("                      {n} x {kind}");
    }
    println!(
        "  drain:            waited {:.2} s after the last write (at most {} s)",
        drained.as_secs_f64(),
        DRAIN_TIMEOUT.as_secs()
    );
    if !fleet.hist.is_empty() && args.subscribers >= 1000 {
        let p99 = Duration::from_micros(fleet.hist.value_at_quantile(0.99));
        let complete = fleet.received == expected && fleet.disconnects == 0 && fleet.error_frames.is_empty();
        let over = fleet.hist.count_between(micros(GOAL_P99), u64::MAX);
        println!(
            "  goal:             p99 {:.2} ms {} {} ms with {} subscribers{}; {over} deliveries ({:.3}%) took ≥ {} ms",
            p99.as_secs_f64() * 1000.0,
            if p99 < GOAL_P99 { "<" } else { "≥" },
            GOAL_P99.as_millis(),
            opened.sockets,
            if p99 < GOAL_P99 && complete {
                ": met"
            } else if complete {
                ": not met"
            } else {
                ": not met (deliveries incomplete)"
            },
            percent(over, fleet.hist.len()),
            GOAL_P99.as_millis()
        );
    }
    print_server_log(&server, "  server log:       ");
    print_machine(&server, "  ");
    println!("  command:          {}", reproduce_command());
    let server_flags = match (&args.target, args.server_workers) {
        (Some(t), _) => format!(" --target {} --admin-token \"$PLAZA_ADMIN_TOKEN\"", shell_quote(t)),
        (None, Some(w)) => format!(" --server-workers {w}"),
        (None, None) => String::new(),
    };
    println!(
        "  effective:        plaza-load {mode} --subscribers {} --writes-per-sec {} --duration-secs {} --batch {} --threads {threads}{server_flags}{}",
        args.subscribers,
        args.writes_per_sec,
        args.duration_secs,
        args.batch,
        if args.floor { " --floor" } else { "" },
    );
    if let Some(s) = server.take() {
        s.stop();
    }
    if let Some(e) = server_exit {
        return Err(e);
    }
    if written.ok == 0 {
        return Err("every write failed (see the errors above)".into());
    }
    Ok(())
}

/// After the last write, waits until every expected delivery has arrived or [`DRAIN_TIMEOUT`]
/// has passed; returns how long it waited.
fn drain_deliveries(deliveries: &Deliveries, expected: u64) -> Duration {
    let started = Instant::now();
    while deliveries.received.load(Ordering::Relaxed) < expected && started.elapsed() < DRAIN_TIMEOUT {
        std::thread::sleep(DRAIN_POLL);
    }
    started.elapsed()
}

/// What the writer did.
struct WriteTally {
    sent: u64,
    ok: u64,
    errors: u64,
    error_kinds: Kinds,
    /// POST sent → response read, successful writes only (µs).
    hist: Histogram<u64>,
    first_send: Option<Instant>,
    last_send: Option<Instant>,
}

impl WriteTally {
    fn new() -> Result<WriteTally, String> {
        Ok(WriteTally {
            sent: 0,
            ok: 0,
            errors: 0,
            error_kinds: Kinds::default(),
            hist: new_histogram()?,
            first_send: None,
            last_send: None,
        })
    }

    /// The writing window: first POST sent → last POST sent, plus one interval at `rate`.
    fn window(&self, rate: u64) -> Duration {
        match (self.first_send, self.last_send) {
            (Some(first), Some(last)) => {
                last.saturating_duration_since(first) + Duration::from_nanos(1_000_000_000 / rate.max(1))
            }
            _ => Duration::ZERO,
        }
    }
}

/// Inserts `count` rows, row `k` due at `k / rate` s after the start (open loop: a slow response
/// does not delay the next write, up to [`MAX_WRITES_IN_FLIGHT`] outstanding).
async fn write_at_rate(
    client: &awc::Client,
    base: &str,
    channel: Channel,
    rate: u64,
    count: u64,
    deliveries: &Deliveries,
) -> Result<WriteTally, String> {
    use actix_web::rt::time::{sleep_until, Instant as TokioInstant};
    let tally = RefCell::new(WriteTally::new()?);
    let url = match channel {
        Channel::Changes => format!("{base}/api/entities/Bench"),
        Channel::PubSub => format!("{base}/api/pubsub/publish"),
    };
    let start = TokioInstant::now();
    let mut in_flight = FuturesUnordered::new();
    for k in 0..count {
        let due = start + Duration::from_nanos(k.saturating_mul(1_000_000_000) / rate);
        // Until row k is due, take in responses; each pass ends one request or reaches `due`.
        loop {
            if in_flight.len() >= MAX_WRITES_IN_FLIGHT {
                in_flight.next().await;
                continue;
            }
            if in_flight.is_empty() {
                sleep_until(due).await;
                break;
            }
            if let Either::Left(_) = future::select(pin!(sleep_until(due)), in_flight.next()).await {
                break;
            }
        }
        in_flight.push(post_row(client, &url, channel, k, deliveries, &tally));
    }
    // Every request ends within the client's timeout (`target::REQUEST_TIMEOUT`).
    while in_flight.next().await.is_some() {}
    drop(in_flight);
    Ok(tally.into_inner())
}

async fn post_row(client: &awc::Client, url: &str, channel: Channel, k: u64, deliveries: &Deliveries, tally: &RefCell<WriteTally>) {
    let (body, expected) = match channel {
        Channel::Changes => (format!(r#"{{"title":"bench {k}","n":{k},"done":false}}"#), awc::http::StatusCode::CREATED),
        Channel::PubSub => (format!(r#"{{"topic":"{PUBSUB_TOPIC}","message":{{"data":{{"n":{k}}}}}}}"#), awc::http::StatusCode::OK),
    };
    let request = client.post(url).insert_header((header::CONTENT_TYPE, "application/json")).send_body(body);
    let sent = Instant::now();
    deliveries.mark_sent(k, sent);
    {
        let mut t = tally.borrow_mut();
        t.sent += 1;
        t.first_send.get_or_insert(sent);
        t.last_send = Some(sent);
    }
    let outcome = match request.await {
        Ok(mut response) => {
            let status = response.status();
            match response.body().limit(BODY_LIMIT).await {
                Ok(_) if status == expected => Ok(()),
                Ok(_) => Err(format!("HTTP {status}")),
                Err(e) => Err(format!("reading the body: {e}")),
            }
        }
        Err(e) => Err(format!("transport: {e}")),
    };
    let done = Instant::now();
    let mut t = tally.borrow_mut();
    match outcome {
        Ok(()) => {
            t.ok += 1;
            t.hist.saturating_record(micros(done - sent));
        }
        Err(kind) => {
            t.errors += 1;
            t.error_kinds.add(kind, 1);
        }
    }
}

/// The server's own commit → socket figures from `/metrics` (Prometheus text).
struct ServerFanout {
    count: u64,
    mean_ms: f64,
    p50_ms: String,
    p99_ms: String,
    slow_consumers: u64,
}

async fn server_fanout(client: &awc::Client, base: &str) -> Result<ServerFanout, String> {
    let mut response = client
        .get(format!("{base}/metrics"))
        .insert_header((header::ACCEPT, "text/plain"))
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("GET /metrics: HTTP {}", response.status()));
    }
    let body = response.body().limit(BODY_LIMIT).await.map_err(|e| format!("GET /metrics: {e}"))?;
    parse_fanout(&String::from_utf8_lossy(&body))
        .ok_or_else(|| "no fanout_latency_seconds histogram in /metrics".into())
}

/// Reads `*fanout_latency_seconds_{bucket,sum,count}` and `*ws_slow_consumers_total`.
fn parse_fanout(text: &str) -> Option<ServerFanout> {
    let mut buckets: Vec<(String, u64)> = Vec::new();
    let (mut count, mut sum, mut slow) = (None, 0.0, 0);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else { continue };
        if let Some(at) = name.find("fanout_latency_seconds_bucket{le=\"") {
            let le = name[at + "fanout_latency_seconds_bucket{le=\"".len()..].trim_end_matches("\"}");
            buckets.push((le.to_string(), value.parse().ok()?));
        } else if name.ends_with("fanout_latency_seconds_count") {
            count = value.parse().ok();
        } else if name.ends_with("fanout_latency_seconds_sum") {
            sum = value.parse().unwrap_or(0.0);
        } else if name.ends_with("ws_slow_consumers_total") {
            slow = value.parse().unwrap_or(0);
        }
    }
    let count: u64 = count?;
    let quantile = |q: f64| {
        let want = ((count as f64) * q).ceil() as u64;
        buckets
            .iter()
            .find(|(_, cumulative)| *cumulative >= want)
            .map(|(le, _)| le.parse::<f64>().map_or_else(|_| le.clone(), |s| format!("{}", s * 1000.0)))
            .unwrap_or_else(|| "?".into())
    };
    Some(ServerFanout {
        count,
        mean_ms: if count == 0 { 0.0 } else { sum * 1000.0 / count as f64 },
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
        slow_consumers: slow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_server_fanout_histogram() {
        let text = "# HELP plaza_fanout_latency_seconds x\n\
            plaza_fanout_latency_seconds_bucket{le=\"0.001\"} 50\n\
            plaza_fanout_latency_seconds_bucket{le=\"0.005\"} 98\n\
            plaza_fanout_latency_seconds_bucket{le=\"0.025\"} 100\n\
            plaza_fanout_latency_seconds_bucket{le=\"+Inf\"} 100\n\
            plaza_fanout_latency_seconds_sum 0.2\n\
            plaza_fanout_latency_seconds_count 100\n\
            plaza_ws_slow_consumers_total 3\n";
        let f = parse_fanout(text).expect("parsed");
        assert_eq!((f.count, f.slow_consumers), (100, 3));
        assert_eq!((f.p50_ms.as_str(), f.p99_ms.as_str()), ("1", "25"));
        assert!((f.mean_ms - 2.0).abs() < 1e-9);
        assert!(parse_fanout("plaza_requests_total 1\n").is_none());
    }
}

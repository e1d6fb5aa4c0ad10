//! `plaza-load`: a load generator for Plaza, with three modes.
//!
//! ## `http`: request throughput and latency of the entity API
//!
//! A fixed number of concurrent closed-loop clients: each connection sends one request, waits
//! for the whole response, records how long that took, and sends the next (keep-alive
//! connections). Three phases run back to back, each for `--duration-secs`:
//!
//! 1. `insert`: `POST /api/entities/Bench` with `{"title":"item <k>","n":k,"done":false}`
//!    (expects 201 and `{"id":...}`; the ids are kept for the next phase, up to 1,000,000);
//! 2. `get`: `GET /api/entities/Bench/<random inserted id>` (expects 200);
//! 3. `list`: `GET /api/entities/Bench?limit=20&offset=<random 0..1000>` (expects 200).
//!
//! For each phase it prints requests completed, errors (non-2xx, unexpected body, or transport),
//! successful requests per second over the phase's wall time, and p50/p90/p99/max latency of the
//! successful requests (HdrHistogram, microsecond resolution, shown in milliseconds). A summary
//! follows with the command line that reproduces the run and the machine's core count.
//!
//! ## `ws`: live fan-out latency to many WebSocket subscribers
//!
//! Opens `--subscribers` WebSockets to `/ws?token=<admin token>` (at most `--batch` handshakes
//! in flight), sends `{"type":"subscribe","id":"s","entity":"Bench"}` on each and waits for every
//! `{"type":"subscribed",...}` reply, printing how long connect + subscribe took. Then an
//! open-loop writer inserts `Bench` rows at a steady `--writes-per-sec` for `--duration-secs`
//! (`POST /api/entities/Bench`, `{"title":"bench <k>","n":k,"done":false}`), remembering when
//! each `k` was sent. Every socket receives one `change` frame per insert; its latency is the time
//! from the POST being sent to the frame being read, so it includes the request's handling and
//! commit: a superset of commit → delivery. After the last write it waits up to
//! [`DRAIN_TIMEOUT`] for in-flight deliveries, then prints writes/s achieved, deliveries expected
//! (ok writes × subscribed sockets) and received, delivered messages/s, p50/p95/p99/max latency,
//! error frames (such as `SLOW_CONSUMER`) and disconnects, the server's own commit → socket
//! figures from `/metrics`, and the command that reproduces the run.
//!
//! ## `idle`: memory held by idle WebSockets
//!
//! Opens `--sockets` WebSockets (each subscribed to `Bench` unless `--no-subscribe`), holds them
//! for `--hold-secs` (2 by default) answering the server's pings, then checks that a sample still answers a
//! `{"type":"ping"}` text frame with `{"type":"pong"}`. It reads the server's `VmRSS` from
//! `/proc/<pid>/status` before and after opening the sockets and prints the total, the delta and
//! the delta per socket in KiB (with `--target`, only when `--server-pid` names the process).
//! It checks the open-file limits of both processes first.
//!
//! ## Running it
//!
//! Build first, so the `plaza` binary sits next to this one:
//!
//! ```text
//! cargo build --release --bins
//! ./target/release/plaza-load http --connections 64 --duration-secs 10
//! ./target/release/plaza-load http --target http://127.0.0.1:4321 --admin-token "$TOKEN"
//! ./target/release/plaza-load ws --subscribers 1000 --writes-per-sec 100 --duration-secs 10
//! ./target/release/plaza-load idle --sockets 10000
//! ./target/release/plaza-load idle --target http://127.0.0.1:4321 --server-pid "$PID"
//! ```
//!
//! Without `--target` every mode starts its own server: the `plaza` executable next to its own,
//! with `--in-memory --port 0 --rate-limit-max 0` (plus `--ws-max-per-ip 100000` for `ws` and
//! `idle`), a throwaway manifest holding the `Bench` entity and a freshly generated admin token;
//! it reads the port from the server's `listening on` log line and stops the server (SIGTERM,
//! then SIGKILL) when it is done or fails. WARN and ERROR lines the server logs during the run
//! are shown at the end. HTTP requests carry `Authorization: Bearer <admin token>` when a token
//! is known, which also satisfies the server's CSRF check for writes; with `--target` they also
//! send `Origin: http://localhost`.
//!
//! `--threads N` splits the connections (or sockets) over N OS threads, each with its own actix
//! System and client; histograms are merged at the end. Client and server share the machine's
//! cores when the server is local, so the figures are for that whole setup, not for the server
//! alone.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::ops::Range;
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use awc::http::header;
use awc::ws::{CloseCode, Frame, Message};
use clap::{Args, Parser, Subcommand};
use futures_util::future::{self, AbortHandle, Abortable, Either};
use futures_util::stream::{self, FuturesUnordered, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::watch;

/// Most ids kept from the insert phase for the get phase.
const MAX_IDS: usize = 1_000_000;
/// Whole-request timeout (send + response + body).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the spawned server has to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the spawned server has to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a transport error so a dead server does not turn a loop into a busy spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Largest response body read (a list page of 20 small rows is far below this).
const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// Histogram range in microseconds: 1 µs .. 2 minutes, 3 significant figures.
const HIST_MAX_US: u64 = 120_000_000;
/// Distinct error kinds remembered per phase (the rest are counted as "other").
const MAX_ERROR_KINDS: usize = 16;
const MANIFEST: &str = r#"{"manifest_version":1,"name":"bench","entities":[{"name":"Bench","fields":[{"name":"title","type":"string"},{"name":"n","type":"int"},{"name":"done","type":"bool"}]}]}"#;

/// Socket limit per client IP given to a spawned server in the `ws` and `idle` modes (every
/// socket comes from 127.0.0.1; the server's default is 1000).
const WS_MAX_PER_IP: &str = "100000";
/// The subscription every socket opens, and the id the server echoes in `subscribed`/`change`.
const SUBSCRIBE_FRAME: &str = r#"{"type":"subscribe","id":"s","entity":"Bench"}"#;
const SUB_ID: &str = "s";
/// The application-level ping the `idle` mode sends to sampled sockets.
const PING_FRAME: &str = r#"{"type":"ping"}"#;
/// Default WebSocket handshakes (connect + upgrade + subscribe) in flight at once, over all
/// client threads, so the server's listen backlog is not overrun.
const DEFAULT_WS_BATCH: usize = 200;
/// Default client threads for the `ws` and `idle` modes. On 2 cores shared with the server, 2
/// beat 1: 1,000 subscribers at 200 writes/s gave p50 3.0 ms / p99 8.4-8.8 ms against
/// p50 3.4-3.8 ms / p99 9.5-17.6 ms, and 10,000 idle sockets opened in 0.49 s against 0.85 s.
const DEFAULT_WS_THREADS: usize = 2;
/// Tries per socket before its connect counts as failed, and the pause before the n-th retry
/// (n × this).
const WS_CONNECT_ATTEMPTS: u32 = 5;
const WS_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// TCP connect + HTTP upgrade of one socket.
const WS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// From sending `subscribe` to reading `subscribed`.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for opening all sockets; the ones not open by then count as failed.
const OPEN_PHASE_TIMEOUT: Duration = Duration::from_secs(300);
/// Sending the close frame when a socket is let go.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// After the last write, how long deliveries still in flight are waited for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the drain wait looks at the delivery count.
const DRAIN_POLL: Duration = Duration::from_millis(10);
/// POSTs of the `ws` writer in flight at once; past this the writer waits (and falls behind).
const MAX_WRITES_IN_FLIGHT: usize = 1024;
/// Most rows the `ws` writer inserts in one run (writes/s × duration).
const MAX_WRITES: u64 = 10_000_000;
/// How long `idle` holds the sockets open before checking them, by default.
const DEFAULT_IDLE_HOLD_SECS: u64 = 2;
/// Sockets asked for a `{"type":"pong"}` after the hold, and how long each may take to answer.
const PING_SAMPLE: usize = 100;
const PONG_TIMEOUT: Duration = Duration::from_secs(5);
/// File descriptors a process needs besides its sockets (listeners, pipes, database, ...).
const FD_MARGIN: u64 = 128;
/// `errno` for "too many open files".
const EMFILE: &str = "os error 24";

#[derive(Parser)]
#[command(name = "plaza-load", about = "Load generator for Plaza: HTTP entity API, WebSocket fan-out, idle sockets")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop HTTP load against the entity API: insert, then get by id, then list pages.
    Http(HttpArgs),
    /// WebSocket fan-out: N subscribers, inserts at a steady rate, write → delivery latency.
    Ws(WsArgs),
    /// N idle WebSockets held open; the server's RSS per socket.
    Idle(IdleArgs),
}

#[derive(Args)]
struct HttpArgs {
    /// Base URL of a running server (e.g. http://127.0.0.1:4321); without it a local
    /// in-memory server is started from the `plaza` binary next to this one.
    #[arg(long)]
    target: Option<String>,
    /// Concurrent request loops (one keep-alive connection each).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Length of each phase in seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Admin token sent as a bearer token (needed for writes with --target); without
    /// --target it is also the spawned server's token (a random one when absent).
    #[arg(long, env = "PLAZA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Client OS threads, each with its own actix System; connections are split among them.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Args)]
struct WsArgs {
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
}

#[derive(Args)]
struct IdleArgs {
    /// Base URL of a running server (e.g. http://127.0.0.1:4321); without it a local
    /// in-memory server is started from the `plaza` binary next to this one.
    #[arg(long)]
    target: Option<String>,
    /// WebSockets opened and held.
    #[arg(long, default_value_t = 10_000)]
    sockets: usize,
    /// Pid of the --target server, to read its RSS and open-file limit from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Admin token for `?token=`; without --target it is also the spawned server's token.
    #[arg(long, env = "PLAZA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Only connect; do not subscribe each socket to `Bench`.
    #[arg(long)]
    no_subscribe: bool,
    /// Seconds the sockets are held open before the ping check (the server pings every 10 s).
    #[arg(long, default_value_t = DEFAULT_IDLE_HOLD_SECS)]
    hold_secs: u64,
    /// Socket handshakes (connect + subscribe) in flight at once, over all threads.
    #[arg(long, default_value_t = DEFAULT_WS_BATCH)]
    batch: usize,
    /// Client OS threads for the sockets, each with its own actix System.
    #[arg(long, default_value_t = DEFAULT_WS_THREADS)]
    threads: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::Http(args) => run_http(args),
        Cmd::Ws(args) => run_ws(args),
        Cmd::Idle(args) => run_idle(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plaza-load: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Insert,
    Get,
    List,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Insert => "insert",
            Phase::Get => "get",
            Phase::List => "list",
        }
    }
}

/// Where requests go and which headers they carry.
struct Target {
    base: String,
    token: Option<String>,
    send_origin: bool,
}

fn run_http(args: HttpArgs) -> Result<(), String> {
    if args.connections == 0 {
        return Err("--connections must be at least 1".into());
    }
    if args.duration_secs == 0 {
        return Err("--duration-secs must be at least 1".into());
    }
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let threads = args.threads.min(args.connections);
    let token = args.admin_token.clone().filter(|t| !t.is_empty());

    // The guard stops the spawned server when this function returns, on every path.
    let (target, mut server) = resolve_target(args.target.as_deref(), token, &[])?;

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "plaza-load: {} connections on {} thread(s), {} s per phase, target {}{}",
        args.connections,
        threads,
        args.duration_secs,
        target.base,
        match &server {
            Some(s) => format!(" (spawned {}, pid {})", s.exe.display(), s.child.id()),
            None => String::new(),
        }
    );
    println!();
    println!(
        "{:<8} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "phase", "requests", "errors", "ok req/s", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );

    let run = Run {
        target: &target,
        connections: args.connections,
        threads,
        duration: Duration::from_secs(args.duration_secs),
    };
    let mut results = Vec::new();

    let mut insert = run.phase(Phase::Insert, &[])?;
    insert.print();
    let ids = std::mem::take(&mut insert.tally.ids);
    let inserted = insert.tally.ok;
    results.push(insert);
    check_server(&mut server)?;
    if ids.is_empty() {
        return Err("the insert phase stored no ids, so the get phase cannot run (see the errors above)".into());
    }

    let get = run.phase(Phase::Get, &ids)?;
    get.print();
    results.push(get);
    check_server(&mut server)?;

    let list = run.phase(Phase::List, &[])?;
    list.print();
    results.push(list);
    check_server(&mut server)?;

    println!();
    println!("summary");
    println!("  command:     {}", reproduce_command());
    println!("  target:      {}", target.base);
    match &server {
        Some(s) => println!(
            "  server:      {} --in-memory --port 0 --host 127.0.0.1 --rate-limit-max 0 (spawned, same machine)",
            s.exe.display()
        ),
        None => println!("  server:      external (--target)"),
    }
    println!(
        "  cores:       {cores} (available_parallelism){}",
        if server.is_some() { ", shared by client and server" } else { "" }
    );
    println!(
        "  client:      {} connections over {} thread(s), {} s per phase, awc keep-alive, closed loop",
        args.connections, threads, args.duration_secs
    );
    println!("  rows:        {inserted} inserted, {} ids kept for the get phase", ids.len());
    let total_errors: u64 = results.iter().map(|r| r.tally.errors).sum();
    println!("  errors:      {total_errors} in total");
    println!("  latency:     successful requests only, measured from send to end of body");
    print_server_log(&server, "  server log:  ");

    if let Some(s) = server.take() {
        s.stop();
    }
    Ok(())
}

/// The base URL and headers for `--target`, or a freshly spawned server (given `extra` flags)
/// and its URL. The returned guard stops the spawned server when dropped.
fn resolve_target(
    url: Option<&str>,
    token: Option<String>,
    extra: &[&str],
) -> Result<(Target, Option<Server>), String> {
    match url {
        Some(url) => {
            let base = url.trim_end_matches('/').to_string();
            if !base.starts_with("http://") {
                return Err(format!("--target must be an http:// URL, got '{url}'"));
            }
            Ok((Target { base, token, send_origin: true }, None))
        }
        None => {
            let token = token.unwrap_or_else(random_token);
            let started = Server::start(&token, extra)?;
            let base = format!("http://127.0.0.1:{}", started.port);
            Ok((Target { base, token: Some(token), send_origin: false }, Some(started)))
        }
    }
}

/// Fails if the spawned server has exited.
fn check_server(server: &mut Option<Server>) -> Result<(), String> {
    if let Some(s) = server {
        match s.child.try_wait() {
            Ok(Some(status)) => return Err(format!("the plaza server exited during the run ({status})")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot check the plaza server process: {e}")),
        }
    }
    Ok(())
}

struct Run<'a> {
    target: &'a Target,
    connections: usize,
    threads: usize,
    duration: Duration,
}

/// State the loops of one phase share, across threads.
struct Shared<'a> {
    phase: Phase,
    target: &'a Target,
    deadline: Instant,
    ids: &'a [String],
    next_k: AtomicU64,
    ids_kept: AtomicUsize,
}

struct PhaseResult {
    phase: Phase,
    elapsed: Duration,
    tally: Tally,
}

impl Run<'_> {
    fn phase(&self, phase: Phase, ids: &[String]) -> Result<PhaseResult, String> {
        let started = Instant::now();
        let shared = Shared {
            phase,
            target: self.target,
            deadline: started + self.duration,
            ids,
            next_k: AtomicU64::new(0),
            ids_kept: AtomicUsize::new(0),
        };
        let (per, extra) = (self.connections / self.threads, self.connections % self.threads);
        let outcomes: Vec<Result<Tally, String>> = std::thread::scope(|scope| {
            let shared = &shared;
            let mut handles = Vec::new();
            for t in 0..self.threads {
                let loops = per + usize::from(t < extra);
                let spawned = std::thread::Builder::new()
                    .name(format!("load-{t}"))
                    .spawn_scoped(scope, move || run_thread(shared, t, loops));
                handles.push(spawned);
            }
            handles
                .into_iter()
                .map(|h| match h {
                    Ok(h) => h.join().unwrap_or_else(|_| Err("a client thread panicked".into())),
                    Err(e) => Err(format!("cannot start a client thread: {e}")),
                })
                .collect()
        });
        let elapsed = started.elapsed();
        let mut total = Tally::new()?;
        for outcome in outcomes {
            total.merge(outcome?)?;
        }
        Ok(PhaseResult { phase, elapsed, tally: total })
    }
}

impl PhaseResult {
    fn print(&self) {
        let t = &self.tally;
        let ms = |us: u64| us as f64 / 1000.0;
        let (p50, p90, p99, max) = if t.hist.is_empty() {
            (0, 0, 0, 0)
        } else {
            (
                t.hist.value_at_quantile(0.50),
                t.hist.value_at_quantile(0.90),
                t.hist.value_at_quantile(0.99),
                t.hist.max(),
            )
        };
        let rate = t.ok as f64 / self.elapsed.as_secs_f64().max(1e-9);
        println!(
            "{:<8} {:>10} {:>8} {:>11.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
            self.phase.name(),
            t.ok + t.errors,
            t.errors,
            rate,
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max)
        );
        for (kind, n) in t.error_kinds.iter() {
            println!("{:<8}   {n} x {kind}", "");
        }
    }
}

/// One OS thread: its own actix System and HTTP client, `loops` concurrent request loops.
fn run_thread(shared: &Shared<'_>, thread: usize, loops: usize) -> Result<Tally, String> {
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let client = build_client(shared.target, loops);
        let loops = (0..loops).map(|i| run_loop(&client, shared, seed(thread, i)));
        let mut total = Tally::new()?;
        for tally in futures_util::future::join_all(loops).await {
            total.merge(tally?)?;
        }
        Ok(total)
    })
}

fn build_client(target: &Target, loops: usize) -> awc::Client {
    let connector = awc::Connector::new().limit(loops.max(1) + 8).timeout(CONNECT_TIMEOUT);
    let mut builder = awc::Client::builder().connector(connector).timeout(REQUEST_TIMEOUT).disable_redirects();
    if let Some(token) = &target.token {
        builder = builder.bearer_auth(token);
    }
    if target.send_origin {
        builder = builder.add_default_header((header::ORIGIN, "http://localhost"));
    }
    builder.finish()
}

/// Sends requests one after another until the phase deadline.
async fn run_loop(client: &awc::Client, shared: &Shared<'_>, seed: u64) -> Result<Tally, String> {
    let mut tally = Tally::new()?;
    let mut rng = SplitMix64(seed);
    let base = &shared.target.base;
    while Instant::now() < shared.deadline {
        let started = Instant::now();
        let sent = match shared.phase {
            Phase::Insert => {
                let k = shared.next_k.fetch_add(1, Ordering::Relaxed);
                let body = serde_json::json!({ "title": format!("item {k}"), "n": k, "done": false });
                client
                    .post(format!("{base}/api/entities/Bench"))
                    .insert_header((header::CONTENT_TYPE, "application/json"))
                    .send_body(body.to_string())
                    .await
            }
            Phase::Get => {
                let id = &shared.ids[rng.below(shared.ids.len() as u64) as usize];
                client.get(format!("{base}/api/entities/Bench/{id}")).send().await
            }
            Phase::List => {
                let offset = rng.below(1000);
                client.get(format!("{base}/api/entities/Bench?limit=20&offset={offset}")).send().await
            }
        };
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => {
                tally.error(format!("transport: {e}"));
                actix_web::rt::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let status = response.status();
        let body = match response.body().limit(BODY_LIMIT).await {
            Ok(b) => b,
            Err(e) => {
                tally.error(format!("reading the body: {e}"));
                continue;
            }
        };
        let elapsed = started.elapsed();
        if !status.is_success() {
            tally.error(format!("HTTP {status}"));
            continue;
        }
        if shared.phase == Phase::Insert {
            let id = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("id").and_then(|id| id.as_str().map(String::from)));
            match id {
                Some(id) => {
                    if shared.ids_kept.fetch_add(1, Ordering::Relaxed) < MAX_IDS {
                        tally.ids.push(id);
                    }
                }
                None => {
                    tally.error(format!("HTTP {status} without an \"id\" in the body"));
                    continue;
                }
            }
        }
        tally.ok += 1;
        tally.hist.saturating_record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1));
    }
    Ok(tally)
}

/// Counts and latencies of one loop, thread or phase.
struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    error_kinds: Kinds,
    ids: Vec<String>,
}

impl Tally {
    fn new() -> Result<Tally, String> {
        Ok(Tally { hist: new_histogram()?, ok: 0, errors: 0, error_kinds: Kinds::default(), ids: Vec::new() })
    }

    fn error(&mut self, kind: String) {
        self.errors += 1;
        self.error_kinds.add(kind, 1);
    }

    fn merge(&mut self, other: Tally) -> Result<(), String> {
        merge_histogram(&mut self.hist, &other.hist)?;
        self.ok += other.ok;
        self.errors += other.errors;
        self.error_kinds.merge(other.error_kinds);
        let room = MAX_IDS.saturating_sub(self.ids.len());
        self.ids.extend(other.ids.into_iter().take(room));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The `ws` mode: fan-out latency

/// The figure the issue asks for: p99 delivery latency with 1,000 subscribers.
const GOAL_P99: Duration = Duration::from_millis(25);

fn run_ws(args: WsArgs) -> Result<(), String> {
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
    check_fd_limit("this process", "self", fd_needed)?;
    let token = args.admin_token.clone().filter(|t| !t.is_empty());
    let (target, mut server) = resolve_target(args.target.as_deref(), token, &["--ws-max-per-ip", WS_MAX_PER_IP])?;
    if let Some(s) = &server {
        check_fd_limit("the plaza server", &s.child.id().to_string(), fd_needed)?;
    }
    let deliveries = Deliveries::new(writes as usize);
    let spec = FleetSpec {
        url: ws_url(&target),
        subscribe: true,
        batch_per_thread: args.batch.div_ceil(threads),
        deliveries: Some(&deliveries),
        sample_every: 0,
    };

    println!(
        "plaza-load ws: {} subscribers on {threads} client thread(s), {} writes/s for {} s, target {}{}",
        args.subscribers,
        args.writes_per_sec,
        args.duration_secs,
        target.base,
        spawned_note(&server)
    );

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
        println!("writing {writes} rows at {} writes/s ...", args.writes_per_sec);
        let written = actix_web::rt::System::new().block_on(async {
            let client = build_client(&target, MAX_WRITES_IN_FLIGHT);
            write_at_rate(&client, &target.base, args.writes_per_sec, writes, &deliveries).await
        });
        let drained = match &written {
            Ok(w) => drain_deliveries(&deliveries, w.ok * opened.sockets as u64),
            Err(_) => Duration::ZERO,
        };
        (Stage::Stop, Some((written, drained)))
    })?;
    // A server that died is reported after the figures, which show what the sockets saw.
    let server_exit = check_server(&mut server).err();
    let fanout = actix_web::rt::System::new().block_on(async {
        let client = build_client(&target, 1);
        server_fanout(&client, &target.base).await
    });

    println!();
    println!("ws results");
    println!(
        "  subscribers:      {} requested, {} subscribed in {:.2} s (connect + subscribe), {} failed to open",
        args.subscribers,
        opened.sockets,
        opened.took.as_secs_f64(),
        fleet.open_failed
    );
    print_open_errors(&fleet, "  ");
    let Some((written, drained)) = writer else {
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
    println!("  insert latency:   {} (POST sent → response)", quantiles_ms(&written.hist, &[0.5, 0.99]));
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
    println!("  per socket:       min {}, max {} change frames", fleet.per_socket_min(), fleet.per_socket_max);
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
    println!(
        "                    measured from just before the POST is sent to the change frame being read, so it \
         includes the request's handling and commit: a superset of commit → delivery"
    );
    match &fanout {
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
    println!(
        "  effective:        plaza-load ws --subscribers {} --writes-per-sec {} --duration-secs {} --batch {} --threads {threads}{}",
        args.subscribers,
        args.writes_per_sec,
        args.duration_secs,
        args.batch,
        match &args.target {
            Some(t) => format!(" --target {} --admin-token \"$PLAZA_ADMIN_TOKEN\"", shell_quote(t)),
            None => String::new(),
        }
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

/// When each write was sent, shared by the writer and every socket thread (all `Instant`s of
/// one process, so they compare across threads).
struct Deliveries {
    epoch: Instant,
    /// Nanoseconds since `epoch`, plus 1, when row `k` was sent; 0 while unsent.
    sent_at: Vec<AtomicU64>,
    /// Change frames matched to a write, over all sockets (for the drain wait).
    received: AtomicU64,
}

impl Deliveries {
    fn new(writes: usize) -> Deliveries {
        Deliveries {
            epoch: Instant::now(),
            sent_at: (0..writes).map(|_| AtomicU64::new(0)).collect(),
            received: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn mark_sent(&self, k: u64, at: Instant) {
        if let Some(slot) = usize::try_from(k).ok().and_then(|k| self.sent_at.get(k)) {
            slot.store(self.nanos(at) + 1, Ordering::Release);
        }
    }

    /// Microseconds from sending row `k` to `now`; `None` for a row this run did not send.
    fn latency_us(&self, k: u64, now: Instant) -> Option<u64> {
        let sent = self.sent_at.get(usize::try_from(k).ok()?)?.load(Ordering::Acquire).checked_sub(1)?;
        Some(self.nanos(now).saturating_sub(sent) / 1000)
    }
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
    rate: u64,
    count: u64,
    deliveries: &Deliveries,
) -> Result<WriteTally, String> {
    use actix_web::rt::time::{sleep_until, Instant as TokioInstant};
    let tally = RefCell::new(WriteTally::new()?);
    let url = format!("{base}/api/entities/Bench");
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
        in_flight.push(post_row(client, &url, k, deliveries, &tally));
    }
    // Every request ends within REQUEST_TIMEOUT.
    while in_flight.next().await.is_some() {}
    drop(in_flight);
    Ok(tally.into_inner())
}

async fn post_row(client: &awc::Client, url: &str, k: u64, deliveries: &Deliveries, tally: &RefCell<WriteTally>) {
    let body = format!(r#"{{"title":"bench {k}","n":{k},"done":false}}"#);
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
                Ok(_) if status == awc::http::StatusCode::CREATED => Ok(()),
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

// ---------------------------------------------------------------------------------------------
// The `idle` mode: memory per held socket

fn run_idle(args: IdleArgs) -> Result<(), String> {
    if args.sockets == 0 {
        return Err("--sockets must be at least 1".into());
    }
    if args.batch == 0 || args.threads == 0 {
        return Err("--batch and --threads must be at least 1".into());
    }
    let threads = args.threads.min(args.sockets);
    let hold = Duration::from_secs(args.hold_secs);
    let fd_needed = args.sockets as u64 + FD_MARGIN;
    let client_limit = check_fd_limit("this process", "self", fd_needed)?;
    let token = args.admin_token.clone().filter(|t| !t.is_empty());
    let (target, mut server) = resolve_target(args.target.as_deref(), token, &["--ws-max-per-ip", WS_MAX_PER_IP])?;
    let pid = server.as_ref().map(|s| s.child.id()).or(args.server_pid);
    let server_limit = match pid {
        Some(pid) => check_fd_limit("the plaza server", &pid.to_string(), fd_needed)?,
        None => None,
    };
    let spec = FleetSpec {
        url: ws_url(&target),
        subscribe: !args.no_subscribe,
        batch_per_thread: args.batch.div_ceil(threads),
        deliveries: None,
        sample_every: (args.sockets / PING_SAMPLE).max(1),
    };
    println!(
        "plaza-load idle: {} sockets{} on {threads} client thread(s), target {}{}",
        args.sockets,
        if spec.subscribe { " (each subscribed to Bench)" } else { " (connected, not subscribed)" },
        target.base,
        spawned_note(&server)
    );
    let rss_before = pid.and_then(rss_kib);

    let (opened, fleet, (rss_open, rss_held, client_rss)) = run_fleet(&spec, args.sockets, threads, |opened| {
        println!(
            "opened {} of {} sockets in {:.2} s (at most {} handshakes in flight); holding them {} s ...",
            opened.sockets,
            args.sockets,
            opened.took.as_secs_f64(),
            args.batch,
            hold.as_secs()
        );
        let rss_open = pid.and_then(rss_kib);
        let client_rss = rss_kib(std::process::id());
        std::thread::sleep(hold);
        (Stage::Verify, (rss_open, pid.and_then(rss_kib), client_rss))
    })?;
    // A server that died is reported after the figures, which show what the sockets saw.
    let server_exit = check_server(&mut server).err();

    println!();
    println!("idle results");
    println!(
        "  sockets:          {} requested, {} opened{} in {:.2} s, {} failed to open",
        args.sockets,
        opened.sockets,
        if spec.subscribe { " and subscribed" } else { "" },
        opened.took.as_secs_f64(),
        fleet.open_failed
    );
    print_open_errors(&fleet, "  ");
    println!(
        "  held open:        {} sockets still open after the {} s hold; {} disconnects; server pings answered: {}",
        fleet.alive_at_end,
        hold.as_secs(),
        fleet.disconnects,
        fleet.pings_answered
    );
    for (kind, n) in fleet.disconnect_kinds.iter() {
        println!("                      {n} x {kind}");
    }
    let sampled = fleet.pongs_ok + fleet.pongs_failed;
    println!("  ping check:       {} of {sampled} sampled sockets answered {{\"type\":\"pong\"}}", fleet.pongs_ok);
    for (kind, n) in fleet.pong_failures.iter() {
        println!("                      {n} x {kind}");
    }
    print_kinds("  error frames:     ", &fleet.error_frames, "none");
    match (rss_before, rss_open) {
        (Some(before), Some(after)) => {
            let delta = after.saturating_sub(before);
            println!(
                "  server RSS:       {} before, {} with the sockets open, delta {} = {:.2} KiB per socket ({} sockets); {} after the hold",
                kib(before),
                kib(after),
                kib(delta),
                delta as f64 / (opened.sockets.max(1)) as f64,
                opened.sockets,
                rss_held.map_or_else(|| "?".into(), kib)
            );
        }
        _ if pid.is_none() => {
            println!("  server RSS:       unknown: reading it needs the server's pid (--server-pid PID)")
        }
        _ => println!("  server RSS:       could not read VmRSS from /proc/<pid>/status"),
    }
    if let Some(own) = client_rss {
        println!("  client RSS:       {} (this process, with the sockets open)", kib(own));
    }
    println!(
        "  fd limits:        client {}, server {}; each needs about {fd_needed}",
        describe_limit(client_limit),
        if pid.is_some() { describe_limit(server_limit) } else { "unknown (no pid)".into() }
    );
    print_server_log(&server, "  server log:       ");
    print_machine(&server, "  ");
    println!("  command:          {}", reproduce_command());
    println!(
        "  effective:        plaza-load idle --sockets {} --hold-secs {} --batch {} --threads {threads}{}{}",
        args.sockets,
        args.hold_secs,
        args.batch,
        if spec.subscribe { "" } else { " --no-subscribe" },
        match &args.target {
            Some(t) => format!(
                " --target {}{}",
                shell_quote(t),
                pid.map_or_else(String::new, |p| format!(" --server-pid {p}"))
            ),
            None => String::new(),
        }
    );
    if let Some(s) = server.take() {
        s.stop();
    }
    if let Some(e) = server_exit {
        return Err(e);
    }
    if opened.sockets == 0 {
        return Err("no socket could be opened (see the errors above)".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Fleets of WebSockets (the `ws` and `idle` modes)

/// A client WebSocket as awc hands it out.
type WsFramed = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// What the coordinator tells the sockets; it changes once per run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// Keep reading frames and answering pings.
    Hold,
    /// Sampled sockets send `{"type":"ping"}` and wait for the pong; then every socket closes.
    Verify,
    /// Close and finish.
    Stop,
}

/// How the sockets of a run connect and what they do.
struct FleetSpec<'a> {
    /// `ws://HOST:PORT/ws`, with `?token=` when a token is known.
    url: String,
    /// Send `subscribe` and wait for `subscribed` before a socket counts as open.
    subscribe: bool,
    /// Handshakes in flight per client thread.
    batch_per_thread: usize,
    /// `ws` mode: change frames are matched to the writes.
    deliveries: Option<&'a Deliveries>,
    /// `idle` mode: sockets whose index is a multiple of this take part in the ping check
    /// (0: none).
    sample_every: usize,
}

/// All threads' sockets are open (or failed).
struct Opened {
    sockets: usize,
    took: Duration,
}

/// Runs `sockets` sockets spread over `threads` client threads. Once every thread has opened
/// its share, `during` runs on this thread and returns the stage to move the sockets to (and a
/// value passed back); the threads then finish and their tallies are merged.
fn run_fleet<R>(
    spec: &FleetSpec<'_>,
    sockets: usize,
    threads: usize,
    during: impl FnOnce(&Opened) -> (Stage, R),
) -> Result<(Opened, FleetTally, R), String> {
    let (stage_tx, stage_rx) = watch::channel(Stage::Hold);
    let (ready_tx, ready_rx) = mpsc::channel::<usize>();
    let started = Instant::now();
    std::thread::scope(|scope| {
        // Owned by this closure: an early return drops it, which stops every socket, before the
        // scope joins the threads.
        let stage_tx = stage_tx;
        let (per, extra) = (sockets / threads, sockets % threads);
        let mut handles = Vec::with_capacity(threads);
        let mut first = 0;
        for t in 0..threads {
            let range = first..first + per + usize::from(t < extra);
            first = range.end;
            let (ready, stage) = (ready_tx.clone(), stage_rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("ws-{t}"))
                .spawn_scoped(scope, move || fleet_thread(spec, range, ready, stage))
                .map_err(|e| format!("cannot start a client thread: {e}"))?;
            handles.push(spawned);
        }
        drop(ready_tx);

        let deadline = started + OPEN_PHASE_TIMEOUT + STARTUP_TIMEOUT;
        let (mut open, mut heard) = (0, 0);
        while heard < threads {
            match ready_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(n) => {
                    heard += 1;
                    open += n;
                }
                // Timed out, or every thread has finished (failed) without a word.
                Err(_) => break,
            }
        }
        let opened = Opened { sockets: open, took: started.elapsed() };
        let (stage, value) = during(&opened);
        // Sockets of a thread that is gone have nobody to tell; that is fine.
        let _ = stage_tx.send(stage);
        drop(stage_tx);

        let mut total = FleetTally::new()?;
        let mut failure = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(tally)) => total.merge(tally)?,
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some("a client thread panicked".into()),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok((opened, total, value)),
        }
    })
}

/// One client thread: its own actix System and client, opening `range` sockets (at most
/// `batch_per_thread` at a time), then holding them until the stage changes.
fn fleet_thread(
    spec: &FleetSpec<'_>,
    range: Range<usize>,
    ready: mpsc::Sender<usize>,
    mut stage: watch::Receiver<Stage>,
) -> Result<FleetTally, String> {
    let total = range.len();
    let tally = match FleetTally::new() {
        Ok(t) => RefCell::new(t),
        Err(e) => {
            let _ = ready.send(0);
            return Err(e);
        }
    };
    actix_web::rt::System::new().block_on(async {
        let client = ws_client();
        let opened = RefCell::new(Vec::with_capacity(total));
        let open_all = stream::iter(range).for_each_concurrent(spec.batch_per_thread, |index| {
            let (client, opened, tally) = (&client, &opened, &tally);
            async move {
                match open_socket(client, spec).await {
                    Ok(framed) => opened.borrow_mut().push((index, framed)),
                    Err(e) => tally.borrow_mut().open_failed(e, 1),
                }
            }
        });
        if actix_web::rt::time::timeout(OPEN_PHASE_TIMEOUT, open_all).await.is_err() {
            let mut t = tally.borrow_mut();
            let missing = (total as u64).saturating_sub(opened.borrow().len() as u64 + t.open_failed);
            t.open_failed(format!("not open within {} s", OPEN_PHASE_TIMEOUT.as_secs()), missing);
        }
        let opened = opened.into_inner();
        tally.borrow_mut().opened = opened.len() as u64;
        let _ = ready.send(opened.len());

        let current = Cell::new(Stage::Hold);
        let mut handles = Vec::with_capacity(opened.len());
        let sockets: Vec<_> = opened
            .into_iter()
            .map(|(index, framed)| {
                let (handle, registration) = AbortHandle::new_pair();
                handles.push(handle);
                run_socket(spec, index, framed, registration, &tally, &current)
            })
            .collect();
        // One waiter per thread on the shared channel; the sockets are told by abort handles.
        let watcher = async {
            let next = if stage.changed().await.is_ok() { *stage.borrow() } else { Stage::Stop };
            current.set(next);
            for handle in &handles {
                handle.abort();
            }
        };
        future::join(watcher, future::join_all(sockets)).await;
    });
    Ok(tally.into_inner())
}

fn ws_client() -> awc::Client {
    // No cap on the connector: every socket is its own long-lived connection.
    let connector = awc::Connector::new().limit(0).timeout(CONNECT_TIMEOUT);
    awc::Client::builder().connector(connector).timeout(WS_HANDSHAKE_TIMEOUT).finish()
}

/// `ws://HOST:PORT/ws?token=...` for a target.
fn ws_url(target: &Target) -> String {
    let host = target.base.strip_prefix("http://").unwrap_or(&target.base);
    match &target.token {
        Some(token) => format!("ws://{host}/ws?token={}", percent_encode(token)),
        None => format!("ws://{host}/ws"),
    }
}

/// Connects one socket (with retries) and subscribes it if the spec says so.
async fn open_socket(client: &awc::Client, spec: &FleetSpec<'_>) -> Result<WsFramed, String> {
    let mut last_error = String::new();
    for attempt in 0..WS_CONNECT_ATTEMPTS {
        if attempt > 0 {
            actix_web::rt::time::sleep(WS_RETRY_BACKOFF * attempt).await;
        }
        let connect = client.ws(spec.url.as_str()).connect();
        match actix_web::rt::time::timeout(WS_HANDSHAKE_TIMEOUT, connect).await {
            Ok(Ok((_, mut framed))) => {
                if spec.subscribe {
                    subscribe(&mut framed).await?;
                }
                return Ok(framed);
            }
            Ok(Err(awc::error::WsClientError::InvalidResponseStatus(status))) => {
                last_error = format!("upgrade refused: HTTP {status}");
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = format!("no upgrade within {} s", WS_HANDSHAKE_TIMEOUT.as_secs()),
        }
    }
    Err(last_error)
}

/// Sends the subscribe frame and waits (at most [`SUBSCRIBE_TIMEOUT`]) for `subscribed`.
async fn subscribe(framed: &mut WsFramed) -> Result<(), String> {
    send(framed, Message::Text(SUBSCRIBE_FRAME.into())).await?;
    let reply = async {
        // Ends with the reply, an error, the socket, or the timeout around it.
        loop {
            match framed.next().await {
                Some(Ok(Frame::Text(text))) => {
                    let frame: serde_json::Value =
                        serde_json::from_slice(&text).map_err(|e| format!("unparsable reply to subscribe: {e}"))?;
                    match frame.get("type").and_then(serde_json::Value::as_str) {
                        Some("subscribed") if frame.get("id").and_then(serde_json::Value::as_str) == Some(SUB_ID) => {
                            return Ok(());
                        }
                        Some("error") => return Err(format!("subscribe refused: {}", error_frame_kind(&frame))),
                        _ => {}
                    }
                }
                Some(Ok(Frame::Ping(payload))) => send(framed, Message::Pong(payload)).await?,
                Some(Ok(Frame::Close(reason))) => {
                    return Err(format!("closed while subscribing: {}", close_text(&reason)))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("protocol error while subscribing: {e}")),
                None => return Err("connection closed while subscribing".into()),
            }
        }
    };
    actix_web::rt::time::timeout(SUBSCRIBE_TIMEOUT, reply)
        .await
        .unwrap_or_else(|_| Err(format!("no \"subscribed\" reply within {} s", SUBSCRIBE_TIMEOUT.as_secs())))
}

/// Writes one frame and flushes it.
async fn send(framed: &mut WsFramed, message: Message) -> Result<(), String> {
    Pin::new(&mut *framed).write(message).map_err(|e| format!("encoding a frame: {e}"))?;
    std::future::poll_fn(|cx| Pin::new(&mut *framed).flush::<Message>(cx))
        .await
        .map_err(|e| format!("sending a frame: {e}"))
}

/// One open socket for the rest of the run: reads until the stage changes (or the socket ends),
/// then, in the verify stage, checks `{"type":"ping"}` on sampled sockets, and closes.
async fn run_socket(
    spec: &FleetSpec<'_>,
    index: usize,
    mut framed: WsFramed,
    registration: future::AbortRegistration,
    tally: &RefCell<FleetTally>,
    stage: &Cell<Stage>,
) {
    let mut changes = 0;
    let held = Abortable::new(hold(&mut framed, spec, tally, &mut changes), registration).await;
    let alive = match held {
        Ok(why) => {
            tally.borrow_mut().disconnected(why);
            false
        }
        Err(future::Aborted) => true,
    };
    tally.borrow_mut().socket_done(changes, alive);
    if !alive {
        return;
    }
    if stage.get() == Stage::Verify && spec.sample_every > 0 && index.is_multiple_of(spec.sample_every) {
        let answered = actix_web::rt::time::timeout(PONG_TIMEOUT, await_pong(&mut framed))
            .await
            .unwrap_or_else(|_| Err(format!("no pong within {} s", PONG_TIMEOUT.as_secs())));
        tally.borrow_mut().pong(answered);
    }
    let close = send(&mut framed, Message::Close(Some(CloseCode::Normal.into())));
    let _ = actix_web::rt::time::timeout(CLOSE_TIMEOUT, close).await;
}

/// Reads frames, answering pings, until the socket ends; returns why. It has no end of its own
/// while the socket lives: the caller aborts it when the coordinator moves the stage on.
async fn hold(framed: &mut WsFramed, spec: &FleetSpec<'_>, tally: &RefCell<FleetTally>, changes: &mut u64) -> String {
    loop {
        let Some(item) = framed.next().await else { return "connection closed by the server (EOF)".into() };
        match item {
            Ok(Frame::Text(text)) => tally.borrow_mut().on_text(&text, spec.deliveries, changes),
            Ok(Frame::Ping(payload)) => {
                if let Err(e) = send(framed, Message::Pong(payload)).await {
                    return e;
                }
                tally.borrow_mut().pings_answered += 1;
            }
            Ok(Frame::Pong(_)) => {}
            Ok(Frame::Close(reason)) => return format!("closed by the server: {}", close_text(&reason)),
            Ok(Frame::Binary(_) | Frame::Continuation(_)) => {
                tally.borrow_mut().error_frames.add("binary frame".into(), 1)
            }
            Err(e) => return format!("protocol error: {e}"),
        }
    }
}

/// Sends `{"type":"ping"}` and reads until `{"type":"pong"}` (the caller bounds the time).
async fn await_pong(framed: &mut WsFramed) -> Result<(), String> {
    send(framed, Message::Text(PING_FRAME.into())).await?;
    loop {
        match framed.next().await {
            Some(Ok(Frame::Text(text))) => {
                let frame: Option<serde_json::Value> = serde_json::from_slice(&text).ok();
                if frame.as_ref().and_then(|f| f.get("type")).and_then(serde_json::Value::as_str) == Some("pong") {
                    return Ok(());
                }
            }
            Some(Ok(Frame::Ping(payload))) => send(framed, Message::Pong(payload)).await?,
            Some(Ok(Frame::Close(reason))) => return Err(format!("closed by the server: {}", close_text(&reason))),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("protocol error: {e}")),
            None => return Err("connection closed".into()),
        }
    }
}

fn close_text(reason: &Option<awc::ws::CloseReason>) -> String {
    match reason {
        Some(r) => format!(
            "close code {} ({:?}){}",
            u16::from(r.code),
            r.code,
            r.description.as_deref().map_or_else(String::new, |d| format!(" \"{d}\""))
        ),
        None => "no close reason".into(),
    }
}

/// `CODE: message` of an error frame.
fn error_frame_kind(frame: &serde_json::Value) -> String {
    let field = |name: &str| frame.get(name).and_then(serde_json::Value::as_str).unwrap_or("?").to_string();
    format!("{}: {}", field("code"), field("message"))
}

/// What a text frame from the server is, read cheaply (every change frame goes through this).
#[derive(Debug, PartialEq, Eq)]
enum Inbound {
    /// A change frame, with its row's `n` when it has one.
    Change(Option<u64>),
    Other,
}

/// Change frames are `{"type":"change","sub":..,"event":{..,"data":{..,"n":K,..},..}}`,
/// serialised compactly by the server; the first `"n":` key after `"data":` is the row's `n`
/// (a quote followed by `n":` cannot occur inside a JSON string, where quotes are escaped).
fn classify(frame: &[u8]) -> Inbound {
    const CHANGE: &[u8] = br#"{"type":"change""#;
    if !frame.starts_with(CHANGE) {
        return Inbound::Other;
    }
    let after = |haystack: &[u8], needle: &[u8]| {
        haystack.windows(needle.len()).position(|w| w == needle).map(|at| at + needle.len())
    };
    let n = after(frame, br#""data":{"#).and_then(|data| {
        let rest = &frame[data..];
        let digits = &rest[after(rest, br#""n":"#)?..];
        let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
        std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
    });
    Inbound::Change(n)
}

/// What the sockets of one thread (then of all threads) saw.
struct FleetTally {
    opened: u64,
    open_failed: u64,
    open_errors: Kinds,
    /// Change frames matched to a write, and their write-send → read latency (µs).
    received: u64,
    hist: Histogram<u64>,
    /// Change frames for rows this run did not write (or without a readable `n`).
    unmatched: u64,
    /// Fewest and most change frames read by one socket (`None`: no socket yet).
    per_socket_min: Option<u64>,
    per_socket_max: u64,
    last_rx: Option<Instant>,
    error_frames: Kinds,
    disconnects: u64,
    disconnect_kinds: Kinds,
    pings_answered: u64,
    /// Sockets still open when the stage moved on.
    alive_at_end: u64,
    pongs_ok: u64,
    pongs_failed: u64,
    pong_failures: Kinds,
}

impl FleetTally {
    fn new() -> Result<FleetTally, String> {
        Ok(FleetTally {
            opened: 0,
            open_failed: 0,
            open_errors: Kinds::default(),
            received: 0,
            hist: new_histogram()?,
            unmatched: 0,
            per_socket_min: None,
            per_socket_max: 0,
            last_rx: None,
            error_frames: Kinds::default(),
            disconnects: 0,
            disconnect_kinds: Kinds::default(),
            pings_answered: 0,
            alive_at_end: 0,
            pongs_ok: 0,
            pongs_failed: 0,
            pong_failures: Kinds::default(),
        })
    }

    fn open_failed(&mut self, why: String, n: u64) {
        if n > 0 {
            self.open_failed += n;
            self.open_errors.add(why, n);
        }
    }

    fn on_text(&mut self, text: &[u8], deliveries: Option<&Deliveries>, changes: &mut u64) {
        match classify(text) {
            Inbound::Change(k) => {
                *changes += 1;
                let now = Instant::now();
                match (deliveries, k) {
                    (Some(d), Some(k)) => match d.latency_us(k, now) {
                        Some(us) => {
                            self.received += 1;
                            d.received.fetch_add(1, Ordering::Relaxed);
                            self.hist.saturating_record(us.max(1));
                            self.last_rx = Some(self.last_rx.map_or(now, |last| last.max(now)));
                        }
                        None => self.unmatched += 1,
                    },
                    _ => self.unmatched += 1,
                }
            }
            Inbound::Other => match serde_json::from_slice::<serde_json::Value>(text) {
                Ok(frame) if frame.get("type").and_then(serde_json::Value::as_str) == Some("error") => {
                    self.error_frames.add(error_frame_kind(&frame), 1);
                }
                Ok(_) => {}
                Err(_) => self.error_frames.add("unparsable text frame".into(), 1),
            },
        }
    }

    fn disconnected(&mut self, why: String) {
        self.disconnects += 1;
        self.disconnect_kinds.add(why, 1);
    }

    fn socket_done(&mut self, changes: u64, alive: bool) {
        self.per_socket_min = Some(self.per_socket_min.map_or(changes, |m| m.min(changes)));
        self.per_socket_max = self.per_socket_max.max(changes);
        if alive {
            self.alive_at_end += 1;
        }
    }

    fn pong(&mut self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.pongs_ok += 1,
            Err(why) => {
                self.pongs_failed += 1;
                self.pong_failures.add(why, 1);
            }
        }
    }

    fn per_socket_min(&self) -> u64 {
        self.per_socket_min.unwrap_or(0)
    }

    fn merge(&mut self, other: FleetTally) -> Result<(), String> {
        merge_histogram(&mut self.hist, &other.hist)?;
        self.opened += other.opened;
        self.open_failed += other.open_failed;
        self.open_errors.merge(other.open_errors);
        self.received += other.received;
        self.unmatched += other.unmatched;
        self.per_socket_min = match (self.per_socket_min, other.per_socket_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.per_socket_max = self.per_socket_max.max(other.per_socket_max);
        self.last_rx = self.last_rx.max(other.last_rx);
        self.error_frames.merge(other.error_frames);
        self.disconnects += other.disconnects;
        self.disconnect_kinds.merge(other.disconnect_kinds);
        self.pings_answered += other.pings_answered;
        self.alive_at_end += other.alive_at_end;
        self.pongs_ok += other.pongs_ok;
        self.pongs_failed += other.pongs_failed;
        self.pong_failures.merge(other.pong_failures);
        Ok(())
    }
}

fn print_open_errors(fleet: &FleetTally, indent: &str) {
    for (kind, n) in fleet.open_errors.iter() {
        println!("{indent}                    {n} x {kind}");
    }
    let emfile: u64 = fleet.open_errors.iter().filter(|(k, _)| k.contains(EMFILE)).map(|(_, n)| *n).sum();
    if emfile > 0 {
        println!(
            "{indent}                    {emfile} opens failed with EMFILE (too many open files): raise the open-file \
             limit (ulimit -n) of this process and the server, or open fewer sockets"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Process facts from /proc

/// The soft and hard open-file limits of a process (`self` or a pid); `u64::MAX` = unlimited.
fn open_files_limit(pid: &str) -> Option<(u64, u64)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut fields = line["Max open files".len()..].split_whitespace();
    let parse = |v: &str| if v == "unlimited" { Some(u64::MAX) } else { v.parse().ok() };
    Some((parse(fields.next()?)?, parse(fields.next()?)?))
}

/// Fails with a clear message when `who`'s soft open-file limit is below `needed`; returns the
/// limit (`None` when /proc does not say).
fn check_fd_limit(who: &str, pid: &str, needed: u64) -> Result<Option<(u64, u64)>, String> {
    let limit = open_files_limit(pid);
    if let Some((soft, hard)) = limit {
        if soft < needed {
            return Err(format!(
                "{who} may open {soft} files (soft limit; hard {}), but this run needs about {needed}: \
                 raise it with `ulimit -n {needed}` (at most the hard limit) or open fewer sockets",
                describe_count(hard)
            ));
        }
    }
    Ok(limit)
}

fn describe_limit(limit: Option<(u64, u64)>) -> String {
    match limit {
        Some((soft, hard)) => format!("soft {} / hard {}", describe_count(soft), describe_count(hard)),
        None => "unknown".into(),
    }
}

fn describe_count(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        n.to_string()
    }
}

/// `VmRSS` of a process in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..].split_whitespace().next()?.parse().ok()
}

fn kib(n: u64) -> String {
    format!("{:.1} MiB ({n} KiB)", n as f64 / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// The spawned server

struct Server {
    exe: PathBuf,
    child: Child,
    port: u16,
    /// WARN and ERROR lines logged after startup.
    log: Arc<Mutex<ServerLog>>,
    /// Kept so the manifest file lives as long as the server.
    _manifest: tempfile::NamedTempFile,
    stopped: bool,
}

enum Output {
    Line(String),
    Closed,
}

impl Server {
    /// Starts `plaza` with the flags every mode uses plus `extra`.
    fn start(token: &str, extra: &[&str]) -> Result<Server, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this executable's path: {e}"))?
            .with_file_name("plaza");
        if !exe.is_file() {
            return Err(format!(
                "the plaza server binary is missing at {}; build it first with `cargo build --release` \
                 (or pass --target http://127.0.0.1:PORT to use a running server)",
                exe.display()
            ));
        }
        let mut manifest = tempfile::Builder::new()
            .prefix("plaza-load-")
            .suffix(".json")
            .tempfile()
            .map_err(|e| format!("cannot create the manifest file: {e}"))?;
        manifest
            .write_all(MANIFEST.as_bytes())
            .and_then(|()| manifest.flush())
            .map_err(|e| format!("cannot write the manifest file: {e}"))?;

        let mut child = Command::new(&exe)
            .arg("--in-memory")
            .args(["--host", "127.0.0.1", "--port", "0", "--rate-limit-max", "0", "--drain-secs", "1"])
            .arg("--manifest")
            .arg(manifest.path())
            .arg("--admin-token")
            .arg(token)
            .args(extra)
            // The port is read from an INFO line, so a log filter from the caller's shell must not hide it.
            .env_remove("PLAZA_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;

        let (tx, rx) = mpsc::channel();
        let log = Arc::new(Mutex::new(ServerLog::default()));
        let mut drains = Ok(());
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(e) = drain(pipe, tx.clone(), log.clone()) {
                drains = Err(e);
            }
        }
        drop(tx);
        // From here on the Server owns the child, so every early return below stops it.
        let mut server = Server { exe, child, port: 0, log, _manifest: manifest, stopped: false };
        drains.map_err(|e| format!("cannot start a thread to read the server's output: {e}"))?;

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut tail: Vec<String> = Vec::new();
        let mut open = 2;
        while open > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Output::Line(line)) => {
                    if let Some(port) = listening_port(&line) {
                        server.port = port;
                        // Dropping the receiver switches the drain threads to keeping only
                        // WARN and ERROR lines.
                        drop(rx);
                        return Ok(server);
                    }
                    tail.push(line);
                    if tail.len() > 20 {
                        tail.remove(0);
                    }
                }
                Ok(Output::Closed) => open -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the plaza server printed no 'listening on' line within {} s; its output:\n{}",
                        STARTUP_TIMEOUT.as_secs(),
                        tail.join("\n")
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = match server.child.wait() {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown status: {e}"),
        };
        server.stopped = true;
        Err(format!("the plaza server exited before listening ({status}); its output:\n{}", tail.join("\n")))
    }

    /// SIGTERM (so it can remove its scratch directory), then SIGKILL if it lingers.
    fn stop(mut self) {
        self.stop_child();
    }

    fn stop_child(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let termed = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if termed {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                match self.child.try_wait() {
                    Ok(Some(_)) => return,
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(_) => break,
                }
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_child();
    }
}

/// WARN and ERROR lines (and panics) the server logged after startup: the first
/// [`MAX_LOG_LINES`], and how many more.
#[derive(Default)]
struct ServerLog {
    lines: Vec<String>,
    more: u64,
}

/// Server log lines kept for the report.
const MAX_LOG_LINES: usize = 20;

/// Reads a pipe line by line into `tx`; once nobody listens, keeps reading (so the server never
/// blocks on a full pipe) and keeps only WARN and ERROR lines and panics, in `log`.
fn drain(pipe: Box<dyn Read + Send>, tx: mpsc::Sender<Output>, log: Arc<Mutex<ServerLog>>) -> std::io::Result<()> {
    std::thread::Builder::new().name("plaza-output".into()).spawn(move || {
        let mut reader = BufReader::with_capacity(64 * 1024, pipe);
        let mut buf = Vec::new();
        let mut listening = true;
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) if listening => {
                    let line = strip_ansi(&String::from_utf8_lossy(&buf));
                    listening = tx.send(Output::Line(line.trim_end().to_string())).is_ok();
                }
                Ok(_) => {
                    // The level sits right after the timestamp and a panic message starts the
                    // line, so the head of a line is enough: the access log is one line per request.
                    let head = &buf[..buf.len().min(LOG_HEAD_BYTES)];
                    if !contains(head, b"WARN") && !contains(head, b"ERROR") && !contains(head, b"panicked") {
                        continue;
                    }
                    let line = strip_ansi(&String::from_utf8_lossy(&buf)).trim_end().to_string();
                    if line.contains(" WARN ") || line.contains("ERROR ") || line.contains("panicked") {
                        if let Ok(mut log) = log.lock() {
                            if log.lines.len() < MAX_LOG_LINES {
                                log.lines.push(line);
                            } else {
                                log.more += 1;
                            }
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(Output::Closed);
    })?;
    Ok(())
}

/// Bytes at the start of a server log line that hold its level (or a panic's first words).
const LOG_HEAD_BYTES: usize = 96;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Removes ANSI escape sequences (`ESC [ ... final-byte`, and lone `ESC x`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
    }
    out
}

/// The port in a line like `INFO listening on 127.0.0.1:36987`.
fn listening_port(line: &str) -> Option<u16> {
    let line = strip_ansi(line);
    let at = line.find("listening on ")?;
    let addr = &line[at + "listening on ".len()..];
    let addr = addr.split_whitespace().next()?;
    let after_colon = &addr[addr.rfind(':')? + 1..];
    let digits: String = after_colon.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|p| *p != 0)
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// Error kinds and their counts, at most [`MAX_ERROR_KINDS`] distinct ones (the rest are
/// counted together).
#[derive(Default)]
struct Kinds(BTreeMap<String, u64>);

impl Kinds {
    fn add(&mut self, kind: String, n: u64) {
        let mut kind: String = kind.chars().take(160).collect();
        if !self.0.contains_key(&kind) && self.0.len() >= MAX_ERROR_KINDS {
            kind = "other errors".into();
        }
        *self.0.entry(kind).or_insert(0) += n;
    }

    fn merge(&mut self, other: Kinds) {
        for (kind, n) in other.0 {
            self.add(kind, n);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &u64)> {
        self.0.iter()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Prints `label` and the kinds, one per line, or `none`.
fn print_kinds(label: &str, kinds: &Kinds, none: &str) {
    if kinds.is_empty() {
        println!("{label}{none}");
        return;
    }
    let pad = " ".repeat(label.chars().count());
    for (i, (kind, n)) in kinds.iter().enumerate() {
        println!("{}{n} x {kind}", if i == 0 { label } else { &pad });
    }
}

fn new_histogram() -> Result<Histogram<u64>, String> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).map_err(|e| format!("histogram: {e}"))
}

fn merge_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) -> Result<(), String> {
    into.add(from).map_err(|e| format!("merging histograms: {e:?}"))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// `p50 1.23  p99 4.56  max 7.89 ms` for the given quantiles.
fn quantiles_ms(hist: &Histogram<u64>, quantiles: &[f64]) -> String {
    if hist.is_empty() {
        return "no samples".into();
    }
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out: Vec<String> =
        quantiles.iter().map(|q| format!("p{} {:.2}", (q * 100.0).round(), ms(hist.value_at_quantile(*q)))).collect();
    out.push(format!("max {:.2} ms", ms(hist.max())));
    out.join("  ")
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// ` (spawned /path/plaza, pid N)` for a spawned server.
fn spawned_note(server: &Option<Server>) -> String {
    match server {
        Some(s) => format!(" (spawned {}, pid {})", s.exe.display(), s.child.id()),
        None => String::new(),
    }
}

/// WARN/ERROR lines the spawned server logged during the run, after `label`.
fn print_server_log(server: &Option<Server>, label: &str) {
    let Some(server) = server else { return };
    let Ok(log) = server.log.lock() else { return };
    if log.lines.is_empty() {
        println!("{label}no WARN/ERROR lines");
        return;
    }
    println!("{label}{} WARN/ERROR lines:", log.lines.len() as u64 + log.more);
    for line in &log.lines {
        println!("    {line}");
    }
    if log.more > 0 {
        println!("    ... and {} more", log.more);
    }
}

fn print_machine(server: &Option<Server>, indent: &str) {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match server {
        Some(s) => println!(
            "{indent}server:           {} --in-memory --port 0 --rate-limit-max 0 --ws-max-per-ip {WS_MAX_PER_IP} \
             (spawned, same machine; {cores} cores shared by client and server)",
            s.exe.display()
        ),
        None => println!("{indent}server:           external (--target); this machine has {cores} cores"),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a query value).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The command line of this run, quoted for a POSIX shell, with the admin token's value hidden.
fn reproduce_command() -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for arg in std::env::args() {
        if hide_next {
            out.push("\"$PLAZA_ADMIN_TOKEN\"".to_string());
            hide_next = false;
        } else if arg == "--admin-token" {
            out.push(arg);
            hide_next = true;
        } else if arg.starts_with("--admin-token=") {
            out.push("--admin-token=\"$PLAZA_ADMIN_TOKEN\"".to_string());
        } else {
            out.push(shell_quote(&arg));
        }
    }
    out.join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:=@%+,".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// A 256-bit random hex token from std's randomly keyed hasher (no extra crate needed).
fn random_token() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (0..4u64)
        .map(|i| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(i);
            h.write_u128(now);
            h.write_u32(std::process::id());
            format!("{:016x}", h.finish())
        })
        .collect()
}

fn seed(thread: usize, loop_index: usize) -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_usize(thread);
    h.write_usize(loop_index);
    h.finish()
}

/// SplitMix64: a tiny, good-enough generator for picking ids and offsets.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_with_and_without_colour() {
        assert_eq!(listening_port("2024-01-01T00:00:00Z  INFO listening on 127.0.0.1:36987"), Some(36987));
        assert_eq!(
            listening_port(
                "\u{1b}[2m2024\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m listening on \u{1b}[1m127.0.0.1:4321\u{1b}[0m"
            ),
            Some(4321)
        );
        assert_eq!(listening_port("INFO listening on [::1]:8080"), Some(8080));
        assert_eq!(listening_port("INFO starting"), None);
    }

    #[test]
    fn reads_n_from_change_frames() {
        let frame = br#"{"type":"change","sub":"s","event":{"seq":7,"entity":"Bench","row_id":"r1","kind":"insert","data":{"id":"r1","title":"bench 42","n":42,"done":0},"timestamp":"t"}}"#;
        assert_eq!(classify(frame), Inbound::Change(Some(42)));
        let no_n = br#"{"type":"change","sub":"s","event":{"seq":7,"data":{"id":"x","title":"\"n\":9"}}}"#;
        assert_eq!(classify(no_n), Inbound::Change(None));
        assert_eq!(classify(br#"{"type":"subscribed","id":"s","seq":0}"#), Inbound::Other);
        assert_eq!(classify(br#"{"type":"error","code":"SLOW_CONSUMER","message":"m"}"#), Inbound::Other);
    }

    #[test]
    fn matches_deliveries_to_writes() {
        let d = Deliveries::new(3);
        let sent = Instant::now();
        d.mark_sent(1, sent);
        assert!(d.latency_us(1, sent + Duration::from_millis(5)).is_some_and(|us| (5000..5100).contains(&us)));
        assert_eq!(d.latency_us(0, sent), None, "never sent");
        assert_eq!(d.latency_us(3, sent), None, "out of range");
    }

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

    #[test]
    fn encodes_tokens_for_the_query() {
        assert_eq!(percent_encode("abc-123_~."), "abc-123_~.");
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
    }

    #[test]
    fn caps_error_kinds() {
        let mut kinds = Kinds::default();
        for i in 0..MAX_ERROR_KINDS + 5 {
            kinds.add(format!("kind {i}"), 1);
        }
        assert_eq!(kinds.iter().count(), MAX_ERROR_KINDS + 1);
        assert_eq!(kinds.iter().find(|(k, _)| *k == "other errors").map(|(_, n)| *n), Some(5));
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("--connections"), "--connections");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}

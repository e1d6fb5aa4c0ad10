//! `plaza-load`: an HTTP load generator for Plaza.
//!
//! It measures request throughput and latency of the entity API with a fixed number of
//! concurrent closed-loop clients: each connection sends one request, waits for the whole
//! response, records how long that took, and sends the next (keep-alive connections). Three
//! phases run back to back, each for `--duration-secs`:
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
//! Run it (build first, so the `plaza` binary sits next to this one):
//!
//! ```text
//! cargo build --release --bins
//! ./target/release/plaza-load http --connections 64 --duration-secs 10
//! ./target/release/plaza-load http --connections 64 --duration-secs 10 --threads 2
//! ./target/release/plaza-load http --target http://127.0.0.1:4321 --admin-token "$TOKEN"
//! ```
//!
//! Without `--target` it starts its own server: the `plaza` executable next to its own, with
//! `--in-memory --port 0 --rate-limit-max 0`, a throwaway manifest holding the `Bench` entity and
//! a freshly generated admin token; it reads the port from the server's `listening on` log line
//! and stops the server (SIGTERM, then SIGKILL) when it is done or fails. Every request carries
//! `Authorization: Bearer <admin token>` when a token is known, which also satisfies the
//! server's CSRF check for writes; with `--target` it also sends `Origin: http://localhost`.
//!
//! `--threads N` splits the connections over N OS threads, each with its own actix System and
//! HTTP client; histograms are merged at the end. Client and server share the machine's cores
//! when the server is local, so the figures are for that whole setup, not for the server alone.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use awc::http::header;
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;

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

#[derive(Parser)]
#[command(name = "plaza-load", about = "HTTP load generator for Plaza (insert, get and list phases)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop HTTP load against the entity API: insert, then get by id, then list pages.
    Http(HttpArgs),
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::Http(args) => run_http(args),
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
    let mut server: Option<Server> = None;
    let target = match &args.target {
        Some(url) => {
            let base = url.trim_end_matches('/').to_string();
            if !base.starts_with("http://") {
                return Err(format!("--target must be an http:// URL, got '{url}'"));
            }
            Target { base, token, send_origin: true }
        }
        None => {
            let token = token.unwrap_or_else(random_token);
            let started = Server::start(&token)?;
            let base = format!("http://127.0.0.1:{}", started.port);
            server = Some(started);
            Target { base, token: Some(token), send_origin: false }
        }
    };

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

    if let Some(s) = server.take() {
        s.stop();
    }
    Ok(())
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
        for (kind, n) in &t.error_kinds {
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
    error_kinds: BTreeMap<String, u64>,
    ids: Vec<String>,
}

impl Tally {
    fn new() -> Result<Tally, String> {
        let hist = Histogram::new_with_bounds(1, HIST_MAX_US, 3).map_err(|e| format!("histogram: {e}"))?;
        Ok(Tally { hist, ok: 0, errors: 0, error_kinds: BTreeMap::new(), ids: Vec::new() })
    }

    fn error(&mut self, kind: String) {
        self.errors += 1;
        self.count_kind(kind, 1);
    }

    fn count_kind(&mut self, kind: String, n: u64) {
        let mut kind: String = kind.chars().take(120).collect();
        if !self.error_kinds.contains_key(&kind) && self.error_kinds.len() >= MAX_ERROR_KINDS {
            kind = "other errors".into();
        }
        *self.error_kinds.entry(kind).or_insert(0) += n;
    }

    fn merge(&mut self, other: Tally) -> Result<(), String> {
        self.hist.add(&other.hist).map_err(|e| format!("merging histograms: {e:?}"))?;
        self.ok += other.ok;
        self.errors += other.errors;
        for (kind, n) in other.error_kinds {
            self.count_kind(kind, n);
        }
        let room = MAX_IDS.saturating_sub(self.ids.len());
        self.ids.extend(other.ids.into_iter().take(room));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The spawned server

struct Server {
    exe: PathBuf,
    child: Child,
    port: u16,
    /// Kept so the manifest file lives as long as the server.
    _manifest: tempfile::NamedTempFile,
    stopped: bool,
}

enum Output {
    Line(String),
    Closed,
}

impl Server {
    fn start(token: &str) -> Result<Server, String> {
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
            // The port is read from an INFO line, so a log filter from the caller's shell must not hide it.
            .env_remove("PLAZA_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;

        let (tx, rx) = mpsc::channel();
        let mut drains = Ok(());
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            if let Err(e) = drain(pipe, tx.clone()) {
                drains = Err(e);
            }
        }
        drop(tx);
        // From here on the Server owns the child, so every early return below stops it.
        let mut server = Server { exe, child, port: 0, _manifest: manifest, stopped: false };
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
                        // Dropping the receiver switches the drain threads to discarding output.
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

/// Reads a pipe line by line into `tx`; once nobody listens, keeps reading and discarding so
/// the server never blocks on a full pipe.
fn drain(pipe: Box<dyn Read + Send>, tx: mpsc::Sender<Output>) -> std::io::Result<()> {
    std::thread::Builder::new().name("plaza-output".into()).spawn(move || {
        let mut reader = BufReader::with_capacity(64 * 1024, pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    let line = strip_ansi(&String::from_utf8_lossy(&buf));
                    if tx.send(Output::Line(line.trim_end().to_string())).is_err() {
                        let _ = std::io::copy(&mut reader, &mut std::io::sink());
                        return;
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
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("--connections"), "--connections");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}

//! The `http` mode: request throughput and latency of the entity API.
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
//! Every phase also prints the server's CPU time per successful request (user + system of the
//! server process from `/proc/<pid>/stat` over the phase, ÷ ok requests; with `--target` only
//! when `--server-pid` is given).
//!
//! Unless `--no-ceiling` is given, the same phases also run against a bare actix-web server
//! (the `ceiling` mode: same routes, worker count and response sizes, no work), spawned from
//! this executable beside Plaza. Each phase then runs in four rounds of half the duration, in a
//! balanced order (ceiling, Plaza, Plaza, ceiling: [`ROUNDS`]), so a machine whose speed drifts
//! during the run weighs on both sides alike; the server not being measured idles. Plaza's
//! rates are printed as ratios to the ceiling's: inserts ÷ ceiling POST, get-by-id ÷ ceiling
//! GET, list ÷ ceiling list.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use awc::http::header;
use clap::Args as ClapArgs;
use hdrhistogram::Histogram;

use crate::ceiling::{self, Ceiling};
use crate::probes::CpuMeter;
use crate::report::reproduce_command;
use crate::rng::{seed, SplitMix64};
use crate::server::{check_server, print_server_log, spawned_note};
use crate::stats::{merge_histogram, new_histogram, Kinds};
use crate::target::{build_client, resolve_target, Target, BODY_LIMIT};

/// Most ids kept from the insert phase for the get phase.
const MAX_IDS: usize = 1_000_000;
/// The order of a phase's rounds with the ceiling: both sides' rounds sit at the same mean
/// time in the run.
const ROUNDS: [Side; 4] = [Side::Ceiling, Side::Plaza, Side::Plaza, Side::Ceiling];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Ceiling,
    Plaza,
}

/// Pause after a transport error so a dead server does not turn a loop into a busy spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);

#[derive(ClapArgs)]
pub struct Args {
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
    /// Skip the ceiling (bare actix-web, see `plaza-load ceiling`) measured before Plaza.
    #[arg(long)]
    no_ceiling: bool,
    /// `--durability` for the spawned server (`normal` or `full`).
    #[arg(long, value_parser = ["normal", "full"])]
    durability: Option<String>,
    /// With --target: the server's pid, for its CPU time per request.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Insert,
    Get,
    List,
}

impl Phase {
    /// The ceiling route a phase is compared with.
    fn method(self) -> &'static str {
        match self {
            Phase::Insert => "POST",
            Phase::Get => "GET",
            Phase::List => "list",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Insert => "insert",
            Phase::Get => "get",
            Phase::List => "list",
        }
    }
}

pub fn run(args: Args) -> Result<(), String> {
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
    let duration = Duration::from_secs(args.duration_secs);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let workers = ceiling::default_workers();

    // Both servers up for the whole run; each phase alternates between them (see `ROUNDS`).
    let bare = if args.no_ceiling { None } else { Some(Ceiling::start(workers)?) };
    let bare_target = bare.as_ref().map(|b| Target { base: b.base_url(), token: None, send_origin: false });
    let mut extra = Vec::new();
    if let Some(d) = &args.durability {
        extra.extend(["--durability", d.as_str()]);
    }
    // The guard stops the spawned server when this function returns, on every path.
    let (target, mut server) = resolve_target(args.target.as_deref(), token, &extra)?;
    if let Some(b) = &bare {
        println!(
            "plaza-load ceiling: bare actix-web, {workers} worker(s), same routes and response sizes, no work (pid {})",
            b.pid()
        );
    }
    println!(
        "plaza-load: {} connections on {} thread(s), {} s per phase{}, target {}{}",
        args.connections,
        threads,
        args.duration_secs,
        if bare.is_some() { " (4 rounds of half that: ceiling, Plaza, Plaza, ceiling)" } else { "" },
        target.base,
        spawned_note(&server)
    );
    print_header();
    let pid = server.as_ref().map(|s| s.pid()).or(args.server_pid);
    let round = if bare.is_some() { duration / 2 } else { duration };
    let plaza = Run { target: &target, connections: args.connections, threads, duration: round, pid };
    let ceiling = bare_target.as_ref().zip(bare.as_ref()).map(|(t, b)| Run {
        target: t,
        connections: args.connections,
        threads,
        duration: round,
        pid: Some(b.pid()),
    });
    let mut results = Vec::new();
    let mut ceiling_results = Vec::new();
    let mut ids = (Vec::new(), Vec::new());
    for phase in [Phase::Insert, Phase::Get, Phase::List] {
        let (mut on_plaza, mut on_ceiling) = (PhaseResult::empty(phase)?, PhaseResult::empty(phase)?);
        let sides: &[Side] = if ceiling.is_some() { &ROUNDS } else { &[Side::Plaza] };
        for &side in sides {
            match (side, &ceiling) {
                (Side::Ceiling, Some(c)) => on_ceiling.add(c.phase(phase, &ids.1)?)?,
                _ => on_plaza.add(plaza.phase(phase, &ids.0)?)?,
            }
            check_server(&mut server)?;
        }
        if ceiling.is_some() {
            on_ceiling.print("ceiling");
        }
        on_plaza.print("plaza");
        if phase == Phase::Insert {
            ids = (std::mem::take(&mut on_plaza.tally.ids), std::mem::take(&mut on_ceiling.tally.ids));
            if ids.0.is_empty() || (ceiling.is_some() && ids.1.is_empty()) {
                return Err("the insert phase stored no ids, so the get phase cannot run (see the errors above)".into());
            }
        }
        results.push(on_plaza);
        ceiling_results.push(on_ceiling);
    }
    drop(bare);

    if ceiling.is_some() {
        println!();
        println!("ratios to the ceiling (measured in this run, in alternating rounds)");
        for (plaza, bare) in results.iter().zip(&ceiling_results) {
            let (p, c) = (plaza.rate(), bare.rate());
            println!(
                "  {:<7} {:>10.1} / {:>10.1} req/s = {:.2} x ceiling {:<5}   cpu {} vs {} µs/op",
                plaza.phase.name(),
                p,
                c,
                p / c.max(1e-9),
                plaza.phase.method(),
                describe_us(plaza.cpu_us()),
                describe_us(bare.cpu_us())
            );
        }
    }

    println!();
    println!("summary");
    println!("  command:     {}", reproduce_command());
    println!("  target:      {}", target.base);
    match &server {
        Some(s) => println!(
            "  server:      {} --in-memory --port 0 --host 127.0.0.1 --rate-limit-max 0{} (spawned, same machine)",
            s.exe.display(),
            args.durability.as_ref().map(|d| format!(" --durability {d}")).unwrap_or_default()
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
    let inserted = results[0].tally.ok;
    println!("  rows:        {inserted} inserted, {} ids kept for the get phase", inserted.min(MAX_IDS as u64));
    let total_errors: u64 = results.iter().map(|r| r.tally.errors).sum();
    println!("  errors:      {total_errors} in total");
    println!("  latency:     successful requests only, measured from send to end of body");
    println!("  cpu µs/op:   the server process's user + system CPU time over the phase (/proc/<pid>/stat) ÷ ok requests");
    print_server_log(&server, "  server log:  ");

    if let Some(s) = server.take() {
        s.stop();
    }
    Ok(())
}

fn print_header() {
    println!(
        "{:<16} {:>10} {:>8} {:>11} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "phase", "requests", "errors", "ok req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "cpu µs/op"
    );
}

fn describe_us(us: Option<f64>) -> String {
    us.map_or_else(|| "?".into(), |us| format!("{us:.1}"))
}

struct Run<'a> {
    target: &'a Target,
    connections: usize,
    threads: usize,
    duration: Duration,
    /// The server's process, for its CPU time per request.
    pid: Option<u32>,
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
    /// Server CPU seconds over the phase (`None` without a pid).
    cpu_secs: Option<f64>,
}

impl Run<'_> {
    fn phase(&self, phase: Phase, ids: &[String]) -> Result<PhaseResult, String> {
        let cpu = self.pid.map(CpuMeter::start);
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
        let cpu_secs = cpu.and_then(|c| c.used_secs());
        Ok(PhaseResult { phase, elapsed, tally: total, cpu_secs })
    }
}

impl PhaseResult {
    fn empty(phase: Phase) -> Result<PhaseResult, String> {
        Ok(PhaseResult { phase, elapsed: Duration::ZERO, tally: Tally::new()?, cpu_secs: Some(0.0) })
    }

    /// Adds a round of the same phase on the same server.
    fn add(&mut self, round: PhaseResult) -> Result<(), String> {
        self.elapsed += round.elapsed;
        self.cpu_secs = self.cpu_secs.zip(round.cpu_secs).map(|(a, b)| a + b);
        self.tally.merge(round.tally)
    }

    /// Server CPU µs per successful request.
    fn cpu_us(&self) -> Option<f64> {
        self.cpu_secs.filter(|_| self.tally.ok > 0).map(|secs| secs * 1e6 / self.tally.ok as f64)
    }

    fn rate(&self) -> f64 {
        self.tally.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn print(&self, server: &str) {
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
        let rate = self.rate();
        println!(
            "{:<16} {:>10} {:>8} {:>11.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10}",
            format!("{} {server}", self.phase.name()),
            t.ok + t.errors,
            t.errors,
            rate,
            ms(p50),
            ms(p90),
            ms(p99),
            ms(max),
            describe_us(self.cpu_us())
        );
        for (kind, n) in t.error_kinds.iter() {
            println!("{:<16}   {n} x {kind}", "");
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

/// Sends requests one after another until the phase deadline.
async fn run_loop(client: &awc::Client, shared: &Shared<'_>, seed: u64) -> Result<Tally, String> {
    let mut tally = Tally::new()?;
    let mut rng = SplitMix64::new(seed);
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

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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use awc::http::header;
use clap::Args as ClapArgs;
use hdrhistogram::Histogram;

use crate::report::reproduce_command;
use crate::rng::{seed, SplitMix64};
use crate::server::{check_server, print_server_log, spawned_note};
use crate::stats::{merge_histogram, new_histogram, Kinds};
use crate::target::{build_client, resolve_target, Target, BODY_LIMIT};

/// Most ids kept from the insert phase for the get phase.
const MAX_IDS: usize = 1_000_000;
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
}

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

    // The guard stops the spawned server when this function returns, on every path.
    let (target, mut server) = resolve_target(args.target.as_deref(), token, &[])?;

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "plaza-load: {} connections on {} thread(s), {} s per phase, target {}{}",
        args.connections,
        threads,
        args.duration_secs,
        target.base,
        spawned_note(&server)
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

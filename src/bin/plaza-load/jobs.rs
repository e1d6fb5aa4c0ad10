//! The `jobs` mode: jobs/s through the `JobQueue` and the `JobWorker` pool.
//!
//! Runs in this process: it builds the app with `plaza::build_state_extras` on a scratch
//! database (as an app embedding Plaza as a library would) and registers one handler,
//! `bench`, that returns at once (`--handler-ms 0`) or sleeps `--handler-ms` on its worker
//! thread. It enqueues `--jobs` jobs straight to the JobQueue actor (at most [`IN_FLIGHT`]
//! enqueues waiting for their commit), and waits until every job has run and the queue is empty.
//! Each job costs three writes through the Writer (enqueued, running, succeeded), committed in
//! groups. Printed: enqueues/s (until the last enqueue was committed), jobs/s (first enqueue →
//! last job finished), the server's queue latency (due → started) and run time from its job
//! metrics, and the command that reproduces the run. With `--handler-ms 5` and W workers the
//! ceiling is W × 200 jobs/s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use futures_util::stream::{FuturesUnordered, StreamExt};
use plaza_actors::jobs::queue::{Enqueue, Stats};
use plaza_actors::jobs::{JobContext, Registry};
use serde_json::Value;

use crate::report::reproduce_command;

/// Enqueues waiting for their commit at once.
const IN_FLIGHT: usize = 512;
/// How often the finish wait looks at the queue.
const POLL: Duration = Duration::from_millis(2);
/// Longest a run may take before it is given up.
const RUN_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(ClapArgs)]
pub struct Args {
    /// Jobs enqueued.
    #[arg(long, default_value_t = 20_000)]
    jobs: u64,
    /// How long the handler sleeps, in ms (0: it returns at once).
    #[arg(long, default_value_t = 0)]
    handler_ms: u64,
    /// Job worker threads (`PLAZA_JOB_WORKERS`).
    #[arg(long, default_value_t = plaza::config::DEFAULT_JOB_WORKERS)]
    workers: usize,
}

pub fn run(args: Args) -> Result<(), String> {
    if args.jobs == 0 || args.workers == 0 {
        return Err("--jobs and --workers must be at least 1".into());
    }
    actix_web::rt::System::new().block_on(measure(args))
}

async fn measure(args: Args) -> Result<(), String> {
    let ran = Arc::new(AtomicU64::new(0));
    let counter = ran.clone();
    let sleep = Duration::from_millis(args.handler_ms);
    let mut registry = Registry::default();
    registry.register("bench", move |_: &JobContext, _: &Value| {
        if !sleep.is_zero() {
            std::thread::sleep(sleep);
        }
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(Value::Null)
    });
    let config = plaza::config::Config { job_workers: args.workers, ..plaza::config::Config::for_tests() };
    let extras = plaza::Extras { jobs: Some(registry), ..Default::default() };
    let state = plaza::build_state_extras(config, plaza_actors::AppManifest::default(), extras).map_err(|e| e.to_string())?;
    let queue = state.plaza.jobs.clone();
    println!(
        "plaza-load jobs: {} jobs, handler {} ms, {} worker(s), in process on a scratch database",
        args.jobs, args.handler_ms, args.workers
    );

    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut failed = 0u64;
    for _ in 0..args.jobs {
        if in_flight.len() >= IN_FLIGHT && in_flight.next().await.is_some_and(|outcome| !matches!(outcome, Ok(Ok(_)))) {
            failed += 1;
        }
        in_flight.push(queue.send(Enqueue { name: "bench".into(), created_by: "admin".into(), ..Enqueue::default() }));
    }
    while let Some(outcome) = in_flight.next().await {
        if !matches!(outcome, Ok(Ok(_))) {
            failed += 1;
        }
    }
    let enqueued = started.elapsed();
    let expected = args.jobs - failed;
    loop {
        let stats = queue.send(Stats).await.map_err(|e| e.to_string())?;
        if ran.load(Ordering::Relaxed) >= expected && stats.pending == 0 && stats.running == 0 {
            break;
        }
        if started.elapsed() > RUN_TIMEOUT {
            return Err(format!("gave up after {} s: {} of {expected} jobs ran", RUN_TIMEOUT.as_secs(), ran.load(Ordering::Relaxed)));
        }
        actix_web::rt::time::sleep(POLL).await;
    }
    let finished = started.elapsed();
    let metrics = state.metrics.jobs.json();
    let ms = |v: &Value, q: &str| v[q].as_f64().map_or("?".into(), |x| format!("{x}"));

    println!();
    println!("jobs results");
    println!("  enqueued:         {expected} ok, {failed} refused; {:.0} enqueues/s (committed), {:.2} s", expected as f64 / enqueued.as_secs_f64().max(1e-9), enqueued.as_secs_f64());
    println!(
        "  ran:              {} jobs in {:.2} s: {:.0} jobs/s (first enqueue → last job finished)",
        ran.load(Ordering::Relaxed),
        finished.as_secs_f64(),
        expected as f64 / finished.as_secs_f64().max(1e-9)
    );
    println!(
        "  queue latency:    p50 ≤ {} ms, p99 ≤ {} ms (due → attempt started; /metrics buckets)",
        ms(&metrics["queue_latency"], "p50_ms"),
        ms(&metrics["queue_latency"], "p99_ms")
    );
    println!(
        "  run time:         mean {:.2} ms, p99 ≤ {} ms per attempt",
        metrics["run_time"]["mean_ms"].as_f64().unwrap_or(0.0),
        ms(&metrics["run_time"], "p99_ms")
    );
    println!(
        "  metrics:          succeeded {}, failed attempts {}, dead {}",
        metrics["succeeded"], metrics["failed_attempts"], metrics["dead"]
    );
    println!("  command:          {}", reproduce_command());
    if failed > 0 {
        return Err(format!("{failed} enqueues were refused"));
    }
    Ok(())
}

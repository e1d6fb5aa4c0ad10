//! The `fairness` mode: does one client flooding the write queue starve the others?
//!
//! Two sessions are minted with the admin token. A single inserter (`single`) sends
//! `POST /api/entities/Bench` one at a time, closed loop, and its latency is recorded. Two
//! phases run back to back, each for `--duration-secs`:
//!
//! 1. `alone`: the single inserter by itself (the baseline);
//! 2. `flooded`: the same, while `--flooders` closed loops of another session (`flood`) send
//!    `POST /api/batch` with `--batch-ops` inserts each, as fast as they are answered.
//!
//! For each phase it prints the single inserter's requests/s and p50/p90/p99/max latency, and
//! for the flood its batches/s, rows/s and how many were refused (503 `OVERLOADED`).

use std::time::{Duration, Instant};

use awc::http::header;
use clap::Args as ClapArgs;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::report::reproduce_command;
use crate::server::{check_server, print_server_log, spawned_note};
use crate::stats::{micros, new_histogram, print_kinds, quantiles_ms, Kinds};
use crate::target::{build_client, resolve_target, Target, BODY_LIMIT};

#[derive(ClapArgs)]
pub struct Args {
    /// Base URL of a running server; without it a local in-memory server is started.
    #[arg(long)]
    target: Option<String>,
    /// Admin token (mints the two sessions); a random one for a spawned server.
    #[arg(long, env = "PLAZA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Concurrent batch loops of the flooding client.
    #[arg(long, default_value_t = 16)]
    flooders: usize,
    /// Inserts per batch (a session may send at most `PLAZA_BULK_MAX_OPS_SESSION`, 100).
    #[arg(long, default_value_t = 100)]
    batch_ops: usize,
    /// Length of each phase in seconds.
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
}

pub fn run(args: Args) -> Result<(), String> {
    if args.flooders == 0 || args.batch_ops == 0 || args.duration_secs == 0 {
        return Err("--flooders, --batch-ops and --duration-secs must be at least 1".into());
    }
    let token = args.admin_token.clone().filter(|t| !t.is_empty());
    let (target, mut server) = resolve_target(args.target.as_deref(), token, &[])?;
    println!(
        "plaza-load fairness: 1 single inserter; {} flooding loops of {}-insert batches; {} s per phase; target {}{}",
        args.flooders,
        args.batch_ops,
        args.duration_secs,
        target.base,
        spawned_note(&server)
    );
    let duration = Duration::from_secs(args.duration_secs);
    let system = actix_web::rt::System::new();
    let (alone, flooded, flood) = system.block_on(async {
        let admin = build_client(&target, 2);
        let single_token = mint(&admin, &target, "single").await?;
        let flood_token = mint(&admin, &target, "flood").await?;
        let single = session_client(&target, &single_token, 2);
        let alone = single_inserter(&single, &target.base, Instant::now() + duration).await?;
        let flooder = session_client(&target, &flood_token, args.flooders);
        let deadline = Instant::now() + duration;
        let floods = (0..args.flooders).map(|_| flood_loop(&flooder, &target.base, args.batch_ops, deadline));
        let (flooded, floods) =
            futures_util::join!(single_inserter(&single, &target.base, deadline), futures_util::future::join_all(floods));
        let mut flood = Flood::default();
        for f in floods {
            flood.merge(f);
        }
        Ok::<_, String>((alone, flooded?, flood))
    })?;
    check_server(&mut server)?;

    println!();
    println!("{:<8} {:>10} {:>8} {:>11}   single inserter latency", "phase", "inserts", "errors", "ok req/s");
    for (name, tally) in [("alone", &alone), ("flooded", &flooded)] {
        println!(
            "{:<8} {:>10} {:>8} {:>11.1}   {}",
            name,
            tally.hist.len(),
            tally.errors.iter().map(|(_, n)| n).sum::<u64>(),
            tally.hist.len() as f64 / duration.as_secs_f64(),
            quantiles_ms(&tally.hist, &[0.5, 0.9, 0.99])
        );
    }
    let secs = duration.as_secs_f64();
    println!();
    println!(
        "flood    {} batches ({:.1}/s), {} rows ({:.0}/s), {} refused with 503",
        flood.batches,
        flood.batches as f64 / secs,
        flood.rows,
        flood.rows as f64 / secs,
        flood.overloaded
    );
    print_kinds("single inserter errors: ", &flooded.errors, "none");
    print_kinds("flood errors:           ", &flood.errors, "none");
    println!();
    println!("summary");
    println!("  command:  {}", reproduce_command());
    println!("  latency:  the single inserter's, send to end of body, successful requests only");
    print_server_log(&server, "  server log:  ");
    if let Some(s) = server.take() {
        s.stop();
    }
    Ok(())
}

/// A session for `user`, minted with the admin token.
async fn mint(admin: &awc::Client, target: &Target, user: &str) -> Result<String, String> {
    let mut resp = admin
        .post(format!("{}/api/auth/session", target.base))
        .send_json(&json!({ "user_id": user }))
        .await
        .map_err(|e| format!("minting a session: {e}"))?;
    let body: Value = resp.json().await.map_err(|e| format!("minting a session: {e}"))?;
    body["token"].as_str().map(String::from).ok_or_else(|| format!("minting a session answered {body}"))
}

fn session_client(target: &Target, token: &str, loops: usize) -> awc::Client {
    let session = Target { base: target.base.clone(), token: Some(token.to_string()), send_origin: target.send_origin };
    build_client(&session, loops)
}

struct Tally {
    hist: Histogram<u64>,
    errors: Kinds,
}

async fn single_inserter(client: &awc::Client, base: &str, deadline: Instant) -> Result<Tally, String> {
    let mut tally = Tally { hist: new_histogram()?, errors: Kinds::default() };
    let mut k = 0u64;
    while Instant::now() < deadline {
        k += 1;
        let started = Instant::now();
        let body = json!({ "title": format!("single {k}"), "n": k, "done": false });
        match post(client, &format!("{base}/api/entities/Bench"), &body).await {
            Ok(201) => tally.hist.saturating_record(micros(started.elapsed()).max(1)),
            Ok(status) => tally.errors.add(format!("HTTP {status}"), 1),
            Err(e) => tally.errors.add(e, 1),
        }
    }
    Ok(tally)
}

#[derive(Default)]
struct Flood {
    batches: u64,
    rows: u64,
    overloaded: u64,
    errors: Kinds,
}

impl Flood {
    fn merge(&mut self, other: Flood) {
        self.batches += other.batches;
        self.rows += other.rows;
        self.overloaded += other.overloaded;
        self.errors.merge(other.errors);
    }
}

async fn flood_loop(client: &awc::Client, base: &str, ops: usize, deadline: Instant) -> Flood {
    let mut flood = Flood::default();
    let mut k = 0u64;
    while Instant::now() < deadline {
        let batch: Vec<Value> = (0..ops)
            .map(|_| {
                k += 1;
                json!({"op": "insert", "entity": "Bench", "data": {"title": format!("flood {k}"), "n": k, "done": false}})
            })
            .collect();
        match post(client, &format!("{base}/api/batch"), &json!({ "operations": batch })).await {
            Ok(200) => {
                flood.batches += 1;
                flood.rows += ops as u64;
            }
            Ok(503) => flood.overloaded += 1,
            Ok(status) => flood.errors.add(format!("HTTP {status}"), 1),
            Err(e) => flood.errors.add(e, 1),
        }
    }
    flood
}

/// Sends `body` and reads the whole answer; the status, or a transport error.
async fn post(client: &awc::Client, url: &str, body: &Value) -> Result<u16, String> {
    let mut resp = client
        .post(url)
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .send_body(body.to_string())
        .await
        .map_err(|e| format!("transport: {e}"))?;
    resp.body().limit(BODY_LIMIT).await.map_err(|e| format!("reading the body: {e}"))?;
    Ok(resp.status().as_u16())
}

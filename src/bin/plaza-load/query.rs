//! The `query` mode: issue #11's figures for graph queries, aggregates, full-text search and
//! the cost of keeping a search index on insert.
//!
//! It spawns a server (this mode has no `--target`: it needs its own manifest) holding
//! `User` (`--users`, 10,000) and `Todo` (`--todos`, 100,000, owners spread at random, an
//! index on `status`, `search` over title + notes with facets status and priority), seeded
//! through `/api/transact` as the admin. One todo in `--common-every` (100) has the word
//! `alpha` in its title: the "common word". Other words come from 5,000 generated ones. Then,
//! each phase for `--duration-secs`, closed loops (send, wait for the whole body, send again):
//!
//! 1. `graph`: `POST /api/query` `{"User":{"where":{"id":{"$in":[50 random ids]}},"include":{"todos":{"$limit":5}}}}`
//!    with `--graph-clients` loops (1);
//! 2. `aggregate`: `POST /api/aggregate/Todo` `{"count":"*","groupBy":["status"]}` over every
//!    row, one loop;
//! 3. `search`: `GET /api/search/Todo?q=alpha&facets=status,priority&limit=20` with
//!    `--clients` loops (16); then `search-cold`, the same with a random `offset` per request,
//!    so the server's recent-search cache (repeats between commits) almost never answers;
//! 4. `insert`: single-row `POST /api/entities/{Plain,Searchable}` with `--insert-connections`
//!    loops (16), the two entities identical except that `Searchable` declares `search`;
//!    eight rounds of a quarter of the duration each, in the order plain, search, search,
//!    plain, search, plain, plain, search ([`ROUNDS`]: both sides' rounds then sit at the same
//!    mean time, so a machine that speeds up or slows down steadily during the run weighs on
//!    both alike, and short rounds spread its faster and slower seconds over both; with plain,
//!    search, plain, search the search rounds ran half a round later on average). The ratio is
//!    search / plain inserts per second.
//!
//! 5. `bulk`: the same comparison with `/api/batch` of 100 rows from 4 loops (rows/s).
//!
//! The report shows, per phase, requests, errors, requests/s and p50/p90/p99/max latency, then
//! each figure against the issue's target and the command that reproduces the run.

use std::time::{Duration, Instant};

use awc::http::header;
use clap::Args as ClapArgs;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::probes::CpuMeter;
use crate::report::reproduce_command;
use crate::rng::{seed, SplitMix64};
use crate::server::{check_server, print_server_log, Server};
use crate::stats::{merge_histogram, new_histogram, Kinds};
use crate::target::{build_client, Target, BODY_LIMIT};

/// Rows per `/api/transact` while seeding (the admin may send up to 10,000).
const SEED_CHUNK: usize = 5_000;
/// Generated vocabulary besides the common word.
const VOCABULARY: usize = 5_000;
/// The word one todo in `--common-every` carries (generated words have 6 letters, so never this).
const COMMON_WORD: &str = "alpha";
const STATUSES: [&str; 4] = ["open", "done", "blocked", "archived"];
/// Pause after a transport error so a dead server does not turn a loop into a busy spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// The insert rounds' order, 0 plain and 1 search: balanced (ABBA BAAB), so both sides' rounds
/// sit at the same mean time in the run. Each lasts a quarter of `--duration-secs`.
const ROUNDS: [usize; 8] = [0, 1, 1, 0, 1, 0, 0, 1];
/// Rows per `/api/batch` and concurrent loops in the bulk insert rounds.
const BULK_ROWS: usize = 100;
const BULK_LOOPS: usize = 4;
/// The issue's targets.
const GRAPH_P99_MS: f64 = 10.0;
const AGGREGATE_MS: f64 = 30.0;
const SEARCH_P99_MS: f64 = 20.0;
const INSERT_RATIO: f64 = 0.70;

const MANIFEST: &str = r#"{"manifest_version":1,"name":"query-bench","entities":[
  {"name":"User","fields":[{"name":"email","type":"string"},{"name":"name","type":"string"}],
   "relations":[{"name":"todos","target":"Todo","field":"ownerId","many":true}]},
  {"name":"Todo","fields":[{"name":"title","type":"string"},{"name":"notes","type":"string","optional":true},
     {"name":"status","type":"string"},{"name":"priority","type":"int"},{"name":"ownerId","type":"id(User)","optional":true}],
   "indexes":[{"fields":["status"]}],
   "relations":[{"name":"owner","target":"User","field":"ownerId"}],
   "search":{"text":["title","notes"],"facets":["status","priority"]}},
  {"name":"Plain","fields":[{"name":"title","type":"string"},{"name":"notes","type":"string","optional":true},
     {"name":"status","type":"string"},{"name":"priority","type":"int"}]},
  {"name":"Searchable","fields":[{"name":"title","type":"string"},{"name":"notes","type":"string","optional":true},
     {"name":"status","type":"string"},{"name":"priority","type":"int"}],
   "search":{"text":["title","notes"],"facets":["status","priority"]}}]}"#;

#[derive(ClapArgs)]
pub struct Args {
    /// Users seeded.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Todos seeded (owners drawn at random among the users).
    #[arg(long, default_value_t = 100_000)]
    todos: usize,
    /// One todo in this many carries the common word searched for.
    #[arg(long, default_value_t = 100)]
    common_every: usize,
    /// Users per graph query (each with at most 5 todos).
    #[arg(long, default_value_t = 50)]
    graph_users: usize,
    /// Concurrent graph-query loops.
    #[arg(long, default_value_t = 1)]
    graph_clients: usize,
    /// Concurrent search loops.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Concurrent insert loops in the insert phase.
    #[arg(long, default_value_t = 16)]
    insert_connections: usize,
    /// Length of each timed phase in seconds (the insert and bulk phases run twice this, in eight rounds).
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// The spawned server's admin token (a random one when absent).
    #[arg(long, env = "PLAZA_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

/// The two sides of a plain / search comparison, measured in [`ROUNDS`].
const SIDES: [&str; 2] = ["plain", "search"];

/// Per side: its rounds' tallies merged (elapsed: their total) and the CPU seconds the server
/// and this client spent in them; and each round's requests/s, in the order run.
struct Sides {
    tallies: [Tally; 2],
    cpu: [(f64, f64); 2],
    rounds: Vec<String>,
}

/// Runs `round_of(side)` for each of [`ROUNDS`], checking the server is alive after each.
fn alternate(server: &mut Option<Server>, round_of: impl Fn(usize) -> Result<Tally, String>) -> Result<Sides, String> {
    let pid = server.as_ref().map(Server::pid);
    let mut sides = Sides { tallies: [Tally::new()?, Tally::new()?], cpu: [(0.0, 0.0); 2], rounds: Vec::with_capacity(ROUNDS.len()) };
    let mut elapsed = [Duration::ZERO; 2];
    for side in ROUNDS {
        let (server_cpu, client_cpu) = (pid.map(CpuMeter::start), CpuMeter::start(std::process::id()));
        let t = round_of(side)?;
        sides.cpu[side].0 += server_cpu.as_ref().and_then(CpuMeter::used_secs).unwrap_or(0.0);
        sides.cpu[side].1 += client_cpu.used_secs().unwrap_or(0.0);
        sides.rounds.push(format!("{} {:.1}k", SIDES[side], t.rate() / 1000.0));
        elapsed[side] += t.elapsed;
        sides.tallies[side].merge(t)?;
        check_server(server)?;
    }
    for (tally, spent) in sides.tallies.iter_mut().zip(elapsed) {
        tally.elapsed = spent;
    }
    Ok(sides)
}

/// One request a loop sends.
struct Req {
    post: bool,
    path: String,
    body: Option<String>,
}

/// Counts and latencies of one phase.
struct Tally {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    kinds: Kinds,
    elapsed: Duration,
}

impl Tally {
    fn new() -> Result<Tally, String> {
        Ok(Tally { hist: new_histogram()?, ok: 0, errors: 0, kinds: Kinds::default(), elapsed: Duration::ZERO })
    }

    fn merge(&mut self, other: Tally) -> Result<(), String> {
        merge_histogram(&mut self.hist, &other.hist)?;
        self.ok += other.ok;
        self.errors += other.errors;
        self.kinds.merge(other.kinds);
        self.elapsed = self.elapsed.max(other.elapsed);
        Ok(())
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn q_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }

    fn print(&self, name: &str) {
        let max = if self.hist.is_empty() { f64::NAN } else { self.hist.max() as f64 / 1000.0 };
        println!(
            "{name:<10} {:>9} {:>7} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            self.ok + self.errors,
            self.errors,
            self.rate(),
            self.q_ms(0.50),
            self.q_ms(0.90),
            self.q_ms(0.99),
            max
        );
        for (kind, n) in self.kinds.iter() {
            println!("{:<10}   {n} x {kind}", "");
        }
    }
}

pub fn run(args: Args) -> Result<(), String> {
    for (name, v) in [
        ("--users", args.users),
        ("--todos", args.todos),
        ("--common-every", args.common_every),
        ("--graph-users", args.graph_users),
        ("--graph-clients", args.graph_clients),
        ("--clients", args.clients),
        ("--insert-connections", args.insert_connections),
    ] {
        if v == 0 {
            return Err(format!("{name} must be at least 1"));
        }
    }
    if args.duration_secs == 0 {
        return Err("--duration-secs must be at least 1".into());
    }
    let token = args.admin_token.clone().filter(|t| !t.is_empty()).unwrap_or_else(crate::rng::random_token);
    let started = Server::start_with_manifest(&token, MANIFEST, &[])?;
    let target = Target { base: format!("http://127.0.0.1:{}", started.port()), token: Some(token), send_origin: false };
    let mut server = Some(started);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("plaza-load query: {} users, {} todos, target {} (spawned)", args.users, args.todos, target.base);

    let vocabulary = vocabulary();
    let seeded = Instant::now();
    let (common, statuses) = seed_rows(&target, &args, &vocabulary)?;
    let seed_secs = seeded.elapsed().as_secs_f64();
    println!(
        "seeded in {seed_secs:.1} s ({:.0} rows/s through /api/transact, {SEED_CHUNK} rows each); '{COMMON_WORD}' is in {common} todos",
        (args.users + args.todos) as f64 / seed_secs
    );
    check_server(&mut server)?;
    println!();
    println!("{:<10} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8}", "phase", "requests", "errors", "ok req/s", "p50 ms", "p90 ms", "p99 ms", "max ms");
    let duration = Duration::from_secs(args.duration_secs);

    let (users, graph_users) = (args.users, args.graph_users);
    let graph = phase(&target, args.graph_clients, duration, &|rng| {
        let ids: Vec<String> = (0..graph_users).map(|_| user_id(rng.below(users as u64) as usize)).collect();
        let body = json!({"User": {"where": {"id": {"$in": ids}}, "include": {"todos": {"$limit": 5}}}});
        Req { post: true, path: "/api/query".into(), body: Some(body.to_string()) }
    }, &|v| {
        let users = v["User"].as_array().ok_or("no User array")?;
        if users.iter().any(|u| u["todos"].as_array().is_none_or(|t| t.len() > 5)) {
            return Err("a user without its todos (or with more than 5)".into());
        }
        Ok(())
    })?;
    graph.print("graph");
    check_server(&mut server)?;

    let total_todos = args.todos as u64;
    let aggregate = phase(&target, 1, duration, &|_| Req {
        post: true,
        path: "/api/aggregate/Todo".into(),
        body: Some(json!({"count": "*", "groupBy": ["status"]}).to_string()),
    }, &|v| {
        let groups = v["groups"].as_array().ok_or("no groups")?;
        let counted: u64 = groups.iter().filter_map(|g| g["count"].as_u64()).sum();
        if counted < total_todos {
            return Err(format!("groups count {counted} rows, fewer than the {total_todos} seeded"));
        }
        Ok(())
    })?;
    aggregate.print("aggregate");
    check_server(&mut server)?;

    let search = phase(&target, args.clients, duration, &|_| Req {
        post: false,
        path: format!("/api/search/Todo?q={COMMON_WORD}&facets=status,priority&limit=20"),
        body: None,
    }, &|v| {
        let total = v["total"].as_u64().ok_or("no total")?;
        if total != common as u64 || v["data"].as_array().is_none_or(|d| d.len() != 20.min(common)) || !v["facets"]["status"].is_object() {
            return Err(format!("expected {common} matches with facets, got total {total}"));
        }
        Ok(())
    })?;
    search.print("search");
    check_server(&mut server)?;

    // The same search, each request a page at a random offset: the server's recent-search
    // cache (per read thread, 32 results) almost never holds it, so every request does the
    // whole work (matches, ranking, facets) as the first search after a write does.
    let pages = common.saturating_sub(20).max(1) as u64;
    let search_cold = phase(&target, args.clients, duration, &|rng| Req {
        post: false,
        path: format!("/api/search/Todo?q={COMMON_WORD}&facets=status,priority&limit=20&offset={}", rng.below(pages)),
        body: None,
    }, &|v| {
        let total = v["total"].as_u64().ok_or("no total")?;
        if total != common as u64 || !v["facets"]["status"].is_object() {
            return Err(format!("expected {common} matches with facets, got total {total}"));
        }
        Ok(())
    })?;
    search_cold.print("search-cold");
    check_server(&mut server)?;

    let round = duration / 4;
    let entities = ["Plain", "Searchable"];
    let words = &vocabulary;
    let inserts = alternate(&mut server, |side| {
        let entity = entities[side];
        phase(&target, args.insert_connections, round, &|rng| {
            let body = todo_json(rng, words, false, None);
            Req { post: true, path: format!("/api/entities/{entity}"), body: Some(body.to_string()) }
        }, &|v| v["id"].as_str().map(drop).ok_or_else(|| "no id".to_string()))
    })?;
    let [plain, searchable] = &inserts.tallies;
    plain.print("ins-plain");
    searchable.print("ins-search");
    println!("{:<10} rounds in order (inserts/s): {}", "", inserts.rounds.join(", "));
    let ratio = searchable.rate() / plain.rate().max(1e-9);
    for (side, tally) in inserts.tallies.iter().enumerate() {
        let per_op = |secs: f64| format!("{:.1} µs", secs * 1e6 / tally.ok.max(1) as f64);
        let (server_cpu, client_cpu) = inserts.cpu[side];
        println!("ins-{:<6} CPU per insert: server {}, this client {}", SIDES[side], per_op(server_cpu), per_op(client_cpu));
    }
    // The same in batches: bigger commits spread the index's per-commit flush over more rows.
    let bulk = alternate(&mut server, |side| {
        let entity = entities[side];
        phase(&target, BULK_LOOPS, round, &|rng| {
            let ops: Vec<Value> = (0..BULK_ROWS)
                .map(|_| json!({"op": "insert", "entity": entity, "data": todo_json(rng, words, false, None)}))
                .collect();
            Req { post: true, path: "/api/batch".into(), body: Some(json!({"operations": ops}).to_string()) }
        }, &|v| match v["succeeded"].as_u64() {
            Some(n) if n == BULK_ROWS as u64 => Ok(()),
            _ => Err(format!("batch not fully applied: {}", v["failed"])),
        })
    })?;
    let bulk = bulk.tallies;
    bulk[0].print("bulk-plain");
    bulk[1].print("bulk-search");
    let bulk_rows = |t: &Tally| t.rate() * BULK_ROWS as f64;
    let bulk_ratio = bulk_rows(&bulk[1]) / bulk_rows(&bulk[0]).max(1e-9);

    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!("figures (issue #11 targets)");
    println!("  graph query, {graph_users} users + <=5 todos each, p99:   {:>7.2} ms  (< {GRAPH_P99_MS} ms: {})", graph.q_ms(0.99), verdict(graph.q_ms(0.99) < GRAPH_P99_MS));
    println!("  aggregate count groupBy status over {} rows: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms  (< {AGGREGATE_MS} ms: {})",
        args.todos, aggregate.q_ms(0.5), aggregate.q_ms(0.99), aggregate.hist.max() as f64 / 1000.0, verdict(aggregate.q_ms(0.99) < AGGREGATE_MS));
    println!("  search '{COMMON_WORD}' ({common} matches) + 2 facets, {} clients, p99: {:>7.2} ms  (< {SEARCH_P99_MS} ms: {})",
        args.clients, search.q_ms(0.99), verdict(search.q_ms(0.99) < SEARCH_P99_MS));
    println!("    the same, every request a different page (no cached result), p99: {:>7.2} ms  (< {SEARCH_P99_MS} ms: {})",
        search_cold.q_ms(0.99), verdict(search_cold.q_ms(0.99) < SEARCH_P99_MS));
    println!("  inserts/s with search / without: {:.0} / {:.0} = {:.0}%  (>= {:.0}%: {})",
        searchable.rate(), plain.rate(), ratio * 100.0, INSERT_RATIO * 100.0, verdict(ratio >= INSERT_RATIO));
    println!("  in batches of {BULK_ROWS} ({BULK_LOOPS} loops), rows/s with search / without: {:.0} / {:.0} = {:.0}%",
        bulk_rows(&bulk[1]), bulk_rows(&bulk[0]), bulk_ratio * 100.0);
    println!();
    println!("summary");
    println!("  command:  {}", reproduce_command());
    println!("  server:   plaza --in-memory (spawned on this machine; {cores} cores shared by client and server)");
    println!("  data:     status spread {statuses:?}, priorities 0..4, 3-word titles and 8-word notes from {VOCABULARY} words");
    println!("  latency:  successful requests only, from send to end of body");
    print_server_log(&server, "  server log: ");
    if let Some(s) = server.take() {
        s.stop();
    }
    Ok(())
}

fn user_id(i: usize) -> String {
    format!("u{i:06}")
}

/// `VOCABULARY` distinct 6-letter words of consonant-vowel syllables.
fn vocabulary() -> Vec<String> {
    const C: &[u8] = b"bcdfghjklmnprstvz";
    const V: &[u8] = b"aeiou";
    let mut rng = SplitMix64::new(7);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < VOCABULARY {
        let w: String = (0..3)
            .flat_map(|_| [C[rng.below(C.len() as u64) as usize] as char, V[rng.below(V.len() as u64) as usize] as char])
            .collect();
        seen.insert(w);
    }
    let mut words: Vec<String> = seen.into_iter().collect();
    words.sort();
    words
}

fn words(rng: &mut SplitMix64, vocabulary: &[String], n: usize) -> String {
    (0..n).map(|_| vocabulary[rng.below(vocabulary.len() as u64) as usize].as_str()).collect::<Vec<_>>().join(" ")
}

fn todo_json(rng: &mut SplitMix64, vocabulary: &[String], common: bool, owner: Option<String>) -> Value {
    let mut title = words(rng, vocabulary, 3);
    if common {
        title = format!("{COMMON_WORD} {title}");
    }
    let mut row = json!({
        "title": title,
        "notes": words(rng, vocabulary, 8),
        "status": STATUSES[rng.below(STATUSES.len() as u64) as usize],
        "priority": rng.below(5),
    });
    if let Some(o) = owner {
        row["ownerId"] = json!(o);
    }
    row
}

/// Seeds users and todos; returns how many todos carry the common word, and the status counts.
fn seed_rows(target: &Target, args: &Args, vocabulary: &[String]) -> Result<(usize, Vec<(String, usize)>), String> {
    let mut rng = SplitMix64::new(42);
    let mut ops: Vec<Value> = (0..args.users)
        .map(|i| json!({"op": "insert", "entity": "User", "id": user_id(i), "data": {"email": format!("user{i}@example.com"), "name": words(&mut rng, vocabulary, 2)}}))
        .collect();
    let mut common = 0;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..args.todos {
        let has = i % args.common_every == 0;
        common += usize::from(has);
        let owner = user_id(rng.below(args.users as u64) as usize);
        let row = todo_json(&mut rng, vocabulary, has, Some(owner));
        *statuses.entry(row["status"].as_str().unwrap_or("").to_string()).or_insert(0) += 1;
        ops.push(json!({"op": "insert", "entity": "Todo", "id": format!("t{i:07}"), "data": row}));
    }
    let system = actix_web::rt::System::new();
    system.block_on(async {
        let client = build_client(target, 1);
        for chunk in ops.chunks(SEED_CHUNK) {
            let mut resp = client
                .post(format!("{}/api/transact", target.base))
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .send_body(serde_json::to_string(chunk).map_err(|e| e.to_string())?)
                .await
                .map_err(|e| format!("seeding: {e}"))?;
            let body = resp.body().limit(BODY_LIMIT * 16).await.map_err(|e| format!("seeding: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("seeding: HTTP {}: {}", resp.status(), String::from_utf8_lossy(&body)));
            }
        }
        Ok::<(), String>(())
    })?;
    Ok((common, statuses.into_iter().collect()))
}

type Check<'a> = dyn Fn(&Value) -> Result<(), String> + Sync + 'a;

/// `loops` closed loops on one client thread for `duration`; each response is checked.
fn phase(target: &Target, loops: usize, duration: Duration, make: &(dyn Fn(&mut SplitMix64) -> Req + Sync), check: &Check<'_>) -> Result<Tally, String> {
    let system = actix_web::rt::System::new();
    let started = Instant::now();
    let deadline = started + duration;
    let mut total = system.block_on(async {
        let client = build_client(target, loops);
        let runs = (0..loops).map(|i| run_loop(&client, target, deadline, seed(0, i), make, check));
        let mut total = Tally::new()?;
        for t in futures_util::future::join_all(runs).await {
            total.merge(t?)?;
        }
        Ok::<Tally, String>(total)
    })?;
    total.elapsed = started.elapsed();
    Ok(total)
}

async fn run_loop(
    client: &awc::Client,
    target: &Target,
    deadline: Instant,
    seed: u64,
    make: &(dyn Fn(&mut SplitMix64) -> Req + Sync),
    check: &Check<'_>,
) -> Result<Tally, String> {
    let mut tally = Tally::new()?;
    let mut rng = SplitMix64::new(seed);
    while Instant::now() < deadline {
        let req = make(&mut rng);
        let url = format!("{}{}", target.base, req.path);
        let started = Instant::now();
        let sent = if req.post {
            client
                .post(url)
                .insert_header((header::CONTENT_TYPE, "application/json"))
                .send_body(req.body.unwrap_or_default())
                .await
        } else {
            client.get(url).send().await
        };
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => {
                tally.errors += 1;
                tally.kinds.add(format!("transport: {e}"), 1);
                actix_web::rt::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let body = resp.body().limit(BODY_LIMIT).await;
        let elapsed = started.elapsed();
        let outcome = match body {
            Err(e) => Err(format!("reading the body: {e}")),
            Ok(_) if !resp.status().is_success() => Err(format!("HTTP {}", resp.status())),
            Ok(b) => serde_json::from_slice::<Value>(&b).map_err(|e| format!("not JSON: {e}")).and_then(|v| check(&v)),
        };
        match outcome {
            Ok(()) => {
                tally.ok += 1;
                tally.hist.saturating_record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).max(1));
            }
            Err(kind) => {
                tally.errors += 1;
                tally.kinds.add(kind, 1);
            }
        }
    }
    Ok(tally)
}

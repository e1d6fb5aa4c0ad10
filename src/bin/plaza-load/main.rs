//! `plaza-load`: a load generator for Plaza, one module per mode: `http` (entity API
//! throughput and latency), `ws` (live fan-out latency), `pubsub` (the same over a pub/sub
//! topic), `idle` (memory per idle WebSocket), `rooms` (room broadcast fan-out and memory per
//! room member), `shards` (tick lateness and snapshot delivery of many shards), `query` (graph
//! queries, aggregates, search, search-index insert cost), `fairness` (a single writer's latency
//! beside a client flooding the write queue), `jobs` (jobs/s through the worker pool).
//! Each mode's module documents what it measures and prints.
//!
//! Adding a mode: a module with a clap `Args` struct and `run(Args) -> Result<(), String>`,
//! and one variant of [`Cmd`] here. What modes share: [`target`] (where requests go and the
//! HTTP client), [`server`] (the spawned server and its log), [`fleet`] (many WebSockets over
//! client threads), [`stats`] (histograms, quantiles, error kinds), [`probes`] (`/proc`),
//! [`report`] (the command line that reproduces a run), [`rng`].
//!
//! ## Running it
//!
//! Build first, so the `plaza` binary sits next to this one:
//!
//! ```text
//! cargo build --release --bins
//! ./target/release/plaza-load http --connections 64 --duration-secs 10   # ceiling first, then Plaza
//! ./target/release/plaza-load http --durability full --no-ceiling
//! ./target/release/plaza-load ceiling --port 8080
//! ./target/release/plaza-load http --target http://127.0.0.1:4321 --admin-token "$TOKEN"
//! ./target/release/plaza-load ws --subscribers 1000 --writes-per-sec 100 --duration-secs 10
//! ./target/release/plaza-load idle --sockets 10000
//! ./target/release/plaza-load shards --shards 100 --hz 30 --players 10 --duration-secs 10
//! ./target/release/plaza-load pubsub --subscribers 1000 --writes-per-sec 100 --duration-secs 10
//! ./target/release/plaza-load jobs --jobs 20000 --handler-ms 0
//! ./target/release/plaza-load query --users 10000 --todos 100000 --clients 16
//! ./target/release/plaza-load idle --target http://127.0.0.1:4321 --server-pid "$PID"
//! ./target/release/plaza-load rooms --rooms 100 --members 50 --rate 1 --duration-secs 10
//! ./target/release/plaza-load rooms --rooms 400 --members 50 --rate 0
//! ./target/release/plaza-load fairness --flooders 16 --batch-ops 100 --duration-secs 10
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

mod ceiling;
mod deliveries;
mod fairness;
mod fleet;
mod floor;
mod http;
mod idle;
mod jobs;
mod probes;
mod query;
mod report;
mod rng;
mod rooms;
mod server;
mod shards;
mod stats;
mod target;
mod ws;

/// Starting and stopping `plaza`: the one harness the process-level tests use too. It lives with
/// them because an integration test cannot depend on a binary, while a binary can include a
/// file; it needs only std, so neither side pulls in anything for the other. This tool uses
/// only part of it.
#[allow(dead_code)]
#[path = "../../../tests/common/process.rs"]
mod process;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "plaza-load", about = "Load generator for Plaza: HTTP entity API, WebSocket and pub/sub fan-out, idle sockets, rooms, shards, jobs")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop HTTP load against the entity API: insert, then get by id, then list pages.
    Http(http::Args),
    /// A bare actix-web server with Plaza's entity routes and response sizes and no work: the
    /// ceiling `http` measures first and reports Plaza's figures against.
    Ceiling(ceiling::Args),
    /// WebSocket fan-out: N subscribers, inserts at a steady rate, write → delivery latency.
    Ws(ws::Args),
    /// N idle WebSockets held open; the server's RSS per socket.
    Idle(idle::Args),
    /// R rooms × M members broadcasting at f Hz over real sockets: deliveries/s, send → receive
    /// latency, server CPU and RSS; `--rate 0` holds them idle and gives the RSS per member.
    Rooms(rooms::Args),
    /// S arena shards at H Hz with P players each (WS, inputs): tick lateness, snapshots/s, CPU.
    Shards(shards::Args),
    /// Pub/sub fan-out: N sockets on one topic, publishes at a steady rate, publish → delivery latency.
    Pubsub(ws::Args),
    /// Jobs/s through the JobQueue and worker pool, in process, with a no-op or sleeping handler.
    Jobs(jobs::Args),
    /// Graph queries, aggregates, full-text search and insert cost of a search index (issue #11).
    Query(query::Args),
    /// One client flooding batches beside a single inserter: the single inserter's latency.
    Fairness(fairness::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Cmd::Http(args) => http::run(args),
        Cmd::Ceiling(args) => ceiling::run(args),
        Cmd::Ws(args) => ws::run(args),
        Cmd::Idle(args) => idle::run(args),
        Cmd::Rooms(args) => rooms::run(args),
        Cmd::Shards(args) => shards::run(args),
        Cmd::Pubsub(args) => ws::run_pubsub(args),
        Cmd::Jobs(args) => jobs::run(args),
        Cmd::Query(args) => query::run(args),
        Cmd::Fairness(args) => fairness::run(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plaza-load: {e}");
            ExitCode::FAILURE
        }
    }
}

//! The `idle` mode: memory held by idle WebSockets.
//!
//! Opens `--sockets` WebSockets (each subscribed to `Bench` unless `--no-subscribe`), holds them
//! for `--hold-secs` (2 by default) answering the server's pings, then checks that a sample still answers a
//! `{"type":"ping"}` text frame with `{"type":"pong"}`. It reads the server's `VmRSS` from
//! `/proc/<pid>/status` before and after opening the sockets and prints the total, the delta and
//! the delta per socket in KiB (with `--target`, only when `--server-pid` names the process).
//! It checks the open-file limits of both processes first.

use std::time::Duration;

use clap::Args as ClapArgs;

use crate::fleet::{print_open_errors, run_fleet, ws_url, FleetSpec, Stage, DEFAULT_WS_BATCH, DEFAULT_WS_THREADS};
use crate::probes::{check_fd_limit, describe_limit, kib, rss_kib, FD_MARGIN};
use crate::report::{reproduce_command, shell_quote};
use crate::server::{check_server, print_machine, print_server_log, spawned_note, WS_MAX_PER_IP};
use crate::stats::print_kinds;
use crate::target::resolve_target;

/// How long `idle` holds the sockets open before checking them, by default.
const DEFAULT_IDLE_HOLD_SECS: u64 = 2;
/// Sockets asked for a `{"type":"pong"}` after the hold.
const PING_SAMPLE: usize = 100;

#[derive(ClapArgs)]
pub struct Args {
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

pub fn run(args: Args) -> Result<(), String> {
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
    let pid = server.as_ref().map(|s| s.pid()).or(args.server_pid);
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

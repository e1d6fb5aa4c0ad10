//! The `plaza` command: serve (default), check, backup, restore.

use std::process::ExitCode;
use std::time::Duration;

use actix_web::{App, HttpServer};
use clap::Parser;
use plaza::config::{Cli, Command, Config};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Lossless (blocks rather than drops when the buffer is full); flushed when `_log` drops.
    // The writer thread flushes after each batch it drains, so a burst of access lines costs
    // one write, not one per line; and it pauses after each flush, so under load the next
    // batch gathers meanwhile instead of every request waking the thread for its one line.
    let stderr = BatchedLog(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let (writer, _log) = tracing_appender::non_blocking::NonBlockingBuilder::default().lossy(false).finish(stderr);
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("PLAZA_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_target(false)
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match Config::from_args(&cli.serve) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let outcome = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => actix_web::rt::System::new().block_on(serve(config)),
        Command::Check => check(&config),
        Command::Backup { out } => plaza_actors::store::backup(&config.db, &out)
            .map(|()| println!("backed up {} to {}", config.db.display(), out.display()))
            .map_err(|e| e.to_string()),
        Command::Codegen { target } => codegen(&config, target),
        Command::Restore { input } => DbLock::acquire(&config.db).and_then(|_lock| {
            plaza_actors::store::restore(&input, &config.db)
                .map(|()| println!("restored {} from {}", config.db.display(), input.display()))
                .map_err(|e| e.to_string())
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// How long the log thread waits after writing a batch: the most a log line is held back.
const LOG_BATCH_PAUSE: Duration = Duration::from_millis(2);

/// The log thread's output: buffered, and pausing for [`LOG_BATCH_PAUSE`] after each flush.
/// The access log (one line per request) then costs one write and one wake-up per batch of
/// requests instead of per request (the wake-ups were ~10% of the CPU of a get-by-id).
struct BatchedLog<W: std::io::Write>(W);

impl<W: std::io::Write> std::io::Write for BatchedLog<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        std::thread::sleep(LOG_BATCH_PAUSE);
        Ok(())
    }
}

fn fail(message: &str) -> ExitCode {
    tracing::error!("{message}");
    eprintln!("plaza: {message}");
    ExitCode::FAILURE
}

fn check(config: &Config) -> Result<(), String> {
    let manifest = plaza::load_manifest(config).map_err(|e| e.to_string())?;
    plaza_actors::model::check(&manifest).map_err(|e| format!("manifest {}: {e}", config.manifest.display()))?;
    let kinds = plaza_actors::shards::SimulationKinds::default();
    plaza_actors::shards::check_manifest(&manifest, &kinds, config.shard_max_tick_hz)
        .map_err(|e| format!("manifest {}: {e}", config.manifest.display()))?;
    println!(
        "{}: ok ({} entities, {} policies, {} shards)",
        config.manifest.display(),
        manifest.entities.len(),
        manifest.policies.len(),
        manifest.shards.len()
    );
    Ok(())
}

/// Prints the generated code; a missing manifest is an error here (there is nothing to type).
fn codegen(config: &Config, target: plaza::codegen::Target) -> Result<(), String> {
    let path = config.manifest.display();
    let manifest = plaza_actors::model::manifest::AppManifest::load(&config.manifest)
        .map_err(|e| format!("manifest {path}: {e}"))?
        .ok_or_else(|| format!("no manifest at {path}: pass --manifest FILE"))?;
    plaza_actors::model::check(&manifest).map_err(|e| format!("manifest {path}: {e}"))?;
    print!("{}", plaza::codegen::generate(target, &manifest));
    Ok(())
}

async fn serve(config: Config) -> Result<(), String> {
    let _lock = if config.in_memory { None } else { Some(DbLock::acquire(&config.db)?) };
    let state = plaza::build_state(config.clone()).map_err(|e| e.to_string())?;
    let app_state = state.clone();
    let server = HttpServer::new(move || App::new().configure(plaza::configure(app_state.clone())))
        .disable_signals()
        // Small frames (live changes, JSON replies) go out at once instead of waiting on Nagle's
        // algorithm and the peer's delayed ACK (a 40 ms stall seen in the fan-out benchmark).
        .on_connect(|conn, _| {
            if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
                let _ = tcp.set_nodelay(true);
            }
        })
        .shutdown_timeout(config.drain_secs);
    let server = server.workers(config.http_workers());
    let server = server.bind((config.host.as_str(), config.port)).map_err(|e| {
        format!("cannot listen on {}:{}: {e}", config.host, config.port)
    })?;
    for addr in server.addrs() {
        tracing::info!("listening on {addr}");
    }
    let server = server.run();
    let handle = server.handle();
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    start_watchdog();
    let (drain_state, drain_secs) = (state.clone(), config.drain_secs);
    actix_web::rt::spawn(async move {
        wait_for_shutdown_signal().await;
        tracing::info!(drain_secs, "shutting down: draining in-flight requests");
        // Shards stop ticking before sockets close (their players are saved with them), and
        // persisting ones save their last snapshot while the Writer still runs.
        let shards_stopped = drain_state.stop_shards();
        drain_state.begin_drain();
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        let drain = Duration::from_secs(drain_secs);
        if actix_web::rt::time::timeout(drain, shards_stopped).await.is_err() {
            tracing::error!("shards did not all stop within the drain time");
        }
        handle.stop(true).await;
    });
    server.await.map_err(|e| e.to_string())?;
    // Last: no request or socket can change a room any more, so what is saved is final.
    let limit = Duration::from_secs(drain_secs.max(1));
    match actix_web::rt::time::timeout(limit, state.persist_rooms()).await {
        Ok(saved) => tracing::info!(rooms = saved, "saved the state of persisting rooms"),
        Err(_) => tracing::error!("timed out saving the state of persisting rooms"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Who may change a database file: the one server serving it, or `restore` replacing it, never
/// both. An exclusive `flock` on `<db>.lock`, held for as long as this value lives. The kernel
/// drops it when the process ends however it ends (SIGKILL included), so a crash never leaves a
/// stale lock; the file itself means nothing. A separate file because any descriptor this
/// process opened and closed on the database itself would drop SQLite's own POSIX locks on it.
/// `backup` takes no lock: it reads a consistent snapshot while the server writes.
struct DbLock {
    _held: std::fs::File,
}

impl DbLock {
    fn acquire(db: &std::path::Path) -> Result<DbLock, String> {
        let mut path = db.as_os_str().to_owned();
        path.push(".lock");
        let path = std::path::PathBuf::from(path);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(DbLock { _held: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "database {} is in use by a running plaza server (it holds {}); stop that server first",
                db.display(),
                path.display()
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

/// systemd's watchdog (WatchdogSec=): ping at half the interval it asks for.
fn start_watchdog() {
    let mut usec = 0;
    if sd_notify::watchdog_enabled(false, &mut usec) && usec > 0 {
        let every = Duration::from_micros(usec / 2);
        actix_web::rt::spawn(async move {
            let mut ticker = actix_web::rt::time::interval(every);
            loop {
                ticker.tick().await;
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
            }
        });
    }
}

async fn wait_for_shutdown_signal() {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => {
            tokio_select(term.recv(), int.recv()).await;
        }
        _ => {
            let _ = actix_web::rt::signal::ctrl_c().await;
        }
    }
}

/// Resolves when either future does.
async fn tokio_select<A: std::future::Future, B: std::future::Future>(a: A, b: B) {
    futures_util::future::select(std::pin::pin!(a), std::pin::pin!(b)).await;
}

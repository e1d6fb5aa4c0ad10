//! The server a run spawns when no `--target` is given: the `plaza` executable next to this one,
//! in memory on a free port, with a throwaway `Bench` manifest (started through the shared
//! process harness). Owns the WARN/ERROR lines it logs during the run and the lines of the
//! report that describe it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::process::{describe_status, strip_ansi, Launch, PlazaProcess, StartError, STARTUP_TIMEOUT};

const MANIFEST: &str = r#"{"manifest_version":1,"name":"bench","entities":[{"name":"Bench","fields":[{"name":"title","type":"string"},{"name":"n","type":"int"},{"name":"done","type":"bool"}]}]}"#;
/// Socket limit per client IP given to a spawned server in the `ws` and `idle` modes (every
/// socket comes from 127.0.0.1; the server's default is 1000).
pub const WS_MAX_PER_IP: &str = "100000";
/// How long the spawned server has to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Server log lines kept for the report.
const MAX_LOG_LINES: usize = 20;
/// Lines of the server's output shown when it does not start.
const STARTUP_TAIL: usize = 20;
/// Bytes at the start of a server log line that hold its level (or a panic's first words).
const LOG_HEAD_BYTES: usize = 96;

pub struct Server {
    pub exe: PathBuf,
    process: PlazaProcess,
    /// WARN and ERROR lines logged after startup.
    log: Arc<Mutex<ServerLog>>,
    /// Kept so the manifest file lives as long as the server.
    _manifest: tempfile::NamedTempFile,
}

impl Server {
    /// Starts `plaza` with the flags every mode uses plus `extra`.
    pub fn start(token: &str, extra: &[&str]) -> Result<Server, String> {
        Self::start_with_manifest(token, MANIFEST, extra)
    }

    /// As [`start`](Self::start), serving `manifest` (JSON) instead of the `Bench` one.
    pub fn start_with_manifest(token: &str, manifest_json: &str, extra: &[&str]) -> Result<Server, String> {
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
            .write_all(manifest_json.as_bytes())
            .and_then(|()| manifest.flush())
            .map_err(|e| format!("cannot write the manifest file: {e}"))?;

        let log = Arc::new(Mutex::new(ServerLog::default()));
        let kept = log.clone();
        let process = Launch::new(&exe)
            .arg("--in-memory")
            .args(["--host", "127.0.0.1", "--port", "0", "--rate-limit-max", "0", "--drain-secs", "1"])
            .arg("--manifest")
            .arg(manifest.path())
            .arg("--admin-token")
            .arg(token)
            .args(extra)
            .on_log(Arc::new(move |line| keep_warnings(&kept, line)))
            .start()
            .map_err(|e| match e {
                StartError::Spawn(e) => format!("cannot start {}: {e}", exe.display()),
                StartError::Reader(e) => format!("cannot start a thread to read the server's output: {e}"),
                StartError::Timeout { output } => format!(
                    "the plaza server printed no 'listening on' line within {} s; its output:\n{}",
                    STARTUP_TIMEOUT.as_secs(),
                    tail(&output)
                ),
                StartError::Exited { status, output } => format!(
                    "the plaza server exited before listening ({}); its output:\n{}",
                    describe_status(&status),
                    tail(&output)
                ),
            })?;
        Ok(Server { exe, process, log, _manifest: manifest })
    }

    pub fn port(&self) -> u16 {
        self.process.port()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// SIGTERM (so it can remove its scratch directory), then SIGKILL if it lingers. Dropping
    /// the server does the same, so every early return of a run stops it too.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.process.stop(STOP_TIMEOUT);
    }
}

/// The last lines of the server's output before it failed to start.
fn tail(output: &[String]) -> String {
    output[output.len().saturating_sub(STARTUP_TAIL)..].join("\n")
}

/// WARN and ERROR lines (and panics) the server logged after startup: the first
/// [`MAX_LOG_LINES`], and how many more.
#[derive(Default)]
struct ServerLog {
    lines: Vec<String>,
    more: u64,
}

/// Keeps `line` if it is a WARN or ERROR line or a panic. The level sits right after the
/// timestamp and a panic message starts the line, so the head of a line is enough to skip the
/// access log (one line per request) cheaply.
fn keep_warnings(log: &Mutex<ServerLog>, line: &[u8]) {
    let head = &line[..line.len().min(LOG_HEAD_BYTES)];
    if !contains(head, b"WARN") && !contains(head, b"ERROR") && !contains(head, b"panicked") {
        return;
    }
    let line = strip_ansi(&String::from_utf8_lossy(line)).trim_end().to_string();
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Fails if the spawned server has exited.
pub fn check_server(server: &mut Option<Server>) -> Result<(), String> {
    if let Some(s) = server {
        match s.process.try_wait() {
            Ok(Some(status)) => return Err(format!("the plaza server exited during the run ({status})")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot check the plaza server process: {e}")),
        }
    }
    Ok(())
}

/// ` (spawned /path/plaza, pid N)` for a spawned server.
pub fn spawned_note(server: &Option<Server>) -> String {
    match server {
        Some(s) => format!(" (spawned {}, pid {})", s.exe.display(), s.pid()),
        None => String::new(),
    }
}

/// WARN/ERROR lines the spawned server logged during the run, after `label`.
pub fn print_server_log(server: &Option<Server>, label: &str) {
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

pub fn print_machine(server: &Option<Server>, indent: &str) {
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

#[cfg(test)]
mod tests {
    use crate::process::listening_addr;

    #[test]
    fn finds_the_address_with_and_without_colour() {
        assert_eq!(
            listening_addr("2024-01-01T00:00:00Z  INFO listening on 127.0.0.1:36987").as_deref(),
            Some("127.0.0.1:36987")
        );
        assert_eq!(
            listening_addr(
                "\u{1b}[2m2024\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m listening on \u{1b}[1m127.0.0.1:4321\u{1b}[0m"
            )
            .as_deref(),
            Some("127.0.0.1:4321")
        );
        assert_eq!(listening_addr("INFO listening on [::1]:8080").as_deref(), Some("[::1]:8080"));
        assert_eq!(listening_addr("INFO listening on 127.0.0.1:0"), None);
        assert_eq!(listening_addr("INFO starting"), None);
    }
}

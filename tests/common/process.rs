//! The built `plaza` binary as a child process: spawn it (flags, environment, working
//! directory), learn its address from its `listening on ADDR` log line, stop it with SIGKILL or
//! SIGTERM. The one harness for the process-level tests (through `tests/common/mod.rs`) and for
//! `plaza-load` (which includes this file with `#[path]`), so it needs nothing but std.

use std::ffi::OsStr;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long a server has to log `listening on` (a debug build on a busy 2-core box included).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Log lines kept from before `listening on`, for the error when a server does not start.
const STARTUP_LINES: usize = 200;
/// How often a wait for the process to exit looks at it (std has no wait with a timeout).
const EXIT_POLL: Duration = Duration::from_millis(10);

/// Receives every output line (stdout and stderr, raw bytes with the newline) logged after
/// `listening on`. Called from the threads that keep the pipes drained, so keep it cheap.
pub type LogSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// How to start a server; [`Launch::start`] runs it.
pub struct Launch {
    command: Command,
    on_log: Option<LogSink>,
}

impl Launch {
    /// The executable at `exe`, no flags yet.
    pub fn new(exe: impl AsRef<OsStr>) -> Launch {
        let mut command = Command::new(exe);
        command
            // The address comes from an INFO line: a filter inherited from the caller's shell
            // must not hide it.
            .env("PLAZA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Launch { command, on_log: None }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Launch {
        self.command.arg(arg);
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Launch {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Launch {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Launch {
        self.command.env_remove(key);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Launch {
        self.command.current_dir(dir);
        self
    }

    /// Where output lines go once the server listens (by default they are read and dropped,
    /// so the server never blocks on a full pipe).
    pub fn on_log(mut self, sink: LogSink) -> Launch {
        self.on_log = Some(sink);
        self
    }

    /// Spawns the server and waits (at most [`STARTUP_TIMEOUT`]) for its `listening on` line.
    /// On every failure the process is gone when this returns.
    pub fn start(mut self) -> Result<PlazaProcess, StartError> {
        let mut child = self.command.spawn().map_err(StartError::Spawn)?;
        let (tx, rx) = mpsc::channel();
        let pipes = [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>),
        ];
        // From here on the PlazaProcess owns the child, so every early return below stops it.
        let mut process = PlazaProcess { child, addr: String::new(), exit: None };
        for pipe in pipes.into_iter().flatten() {
            drain(pipe, tx.clone(), self.on_log.clone()).map_err(StartError::Reader)?;
        }
        drop(tx);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut output = Vec::new();
        let mut open_pipes = 2;
        while open_pipes > 0 {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Output::Line(line)) => {
                    if let Some(addr) = listening_addr(&line) {
                        process.addr = addr;
                        // Dropping the receiver hands the rest of the output to the sink.
                        drop(rx);
                        return Ok(process);
                    }
                    if output.len() == STARTUP_LINES {
                        output.remove(0);
                    }
                    output.push(line);
                }
                Ok(Output::Closed) => open_pipes -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => return Err(StartError::Timeout { output }),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = process.child.wait();
        if let Ok(status) = &status {
            process.exit = Some(*status);
        }
        Err(StartError::Exited { status, output })
    }
}

/// Why a server did not come up; `output` holds its last log lines before that.
#[derive(Debug)]
pub enum StartError {
    Spawn(std::io::Error),
    /// A thread to read the server's output could not be started.
    Reader(std::io::Error),
    Timeout { output: Vec<String> },
    Exited { status: std::io::Result<ExitStatus>, output: Vec<String> },
}

impl StartError {
    /// The server's log lines up to the failure.
    pub fn output(&self) -> &[String] {
        match self {
            StartError::Timeout { output } | StartError::Exited { output, .. } => output,
            StartError::Spawn(_) | StartError::Reader(_) => &[],
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Spawn(e) => write!(f, "cannot start the server: {e}"),
            StartError::Reader(e) => write!(f, "cannot start a thread to read the server's output: {e}"),
            StartError::Timeout { output } => write!(
                f,
                "the server printed no 'listening on' line within {} s; its output:\n{}",
                STARTUP_TIMEOUT.as_secs(),
                output.join("\n")
            ),
            StartError::Exited { status, output } => write!(
                f,
                "the server exited before listening ({}); its output:\n{}",
                describe_status(status),
                output.join("\n")
            ),
        }
    }
}

/// An exit status as a sentence, or why it is unknown.
pub fn describe_status(status: &std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(s) => s.to_string(),
        Err(e) => format!("unknown status: {e}"),
    }
}

/// `VmRSS` (resident memory) of a process in KiB, from `/proc`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..].split_whitespace().next()?.parse().ok()
}

/// A running server. Dropping it kills it (SIGKILL) unless it has already exited.
pub struct PlazaProcess {
    child: Child,
    /// `HOST:PORT` from the `listening on` line.
    addr: String,
    exit: Option<ExitStatus>,
}

impl PlazaProcess {
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://HOST:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or(0)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the process has ended (without waiting).
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait()?;
        }
        Ok(self.exit)
    }

    /// SIGKILL, then reaps it: no shutdown path of the server runs.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.child.kill()?;
        let status = self.child.wait()?;
        self.exit = Some(status);
        Ok(status)
    }

    /// Sends SIGTERM (the graceful stop) and returns at once.
    pub fn signal_term(&mut self) -> std::io::Result<()> {
        if self.try_wait()?.is_some() {
            return Ok(());
        }
        // std can only send SIGKILL; `kill(1)` is everywhere the server runs.
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill -TERM {} failed ({status})", self.child.id())))
        }
    }

    /// Waits at most `timeout` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(EXIT_POLL);
        }
    }

    /// SIGTERM and at most `timeout` for the exit; `None` if it is still running.
    pub fn terminate(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        self.signal_term()?;
        self.wait_exit(timeout)
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`; never fails.
    pub fn stop(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.terminate(grace) {
            return;
        }
        let _ = self.kill();
    }
}

impl Drop for PlazaProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

enum Output {
    Line(String),
    Closed,
}

/// Reads a pipe line by line into `tx` until the server listens (the receiver is dropped),
/// then into `sink`, to the end: the server must never block on a full pipe.
fn drain(pipe: Box<dyn Read + Send>, tx: mpsc::Sender<Output>, sink: Option<LogSink>) -> std::io::Result<()> {
    std::thread::Builder::new().name("plaza-output".into()).spawn(move || {
        let mut reader = BufReader::with_capacity(64 * 1024, pipe);
        let mut buf = Vec::new();
        let mut starting = true;
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    if starting {
                        let line = strip_ansi(&String::from_utf8_lossy(&buf)).trim_end().to_string();
                        starting = tx.send(Output::Line(line)).is_ok();
                        if starting {
                            continue;
                        }
                    }
                    if let Some(sink) = &sink {
                        sink(&buf);
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

/// The address in a line like `INFO listening on 127.0.0.1:36987` (colour codes allowed).
pub fn listening_addr(line: &str) -> Option<String> {
    let line = strip_ansi(line);
    let at = line.find("listening on ")?;
    let addr = line[at + "listening on ".len()..].split_whitespace().next()?;
    let colon = addr.rfind(':')?;
    let digits = addr[colon + 1..].bytes().take_while(u8::is_ascii_digit).count();
    let port: u16 = addr[colon + 1..colon + 1 + digits].parse().ok()?;
    (port != 0).then(|| addr[..colon + 1 + digits].to_string())
}

/// Removes ANSI escape sequences (`ESC [ ... final-byte`, and lone `ESC x`).
pub fn strip_ansi(s: &str) -> String {
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

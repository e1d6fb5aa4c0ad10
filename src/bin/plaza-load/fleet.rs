//! Many WebSockets at once, for the `ws` and `idle` modes: opened over several client threads
//! (each its own actix System) with a cap on handshakes in flight, optionally subscribed to
//! `Bench`, held while answering the server's pings, then checked and closed when the
//! coordinator moves the [`Stage`] on. Owns what the sockets saw ([`FleetTally`]): change frames
//! matched to writes, error frames, disconnects, pongs.

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use awc::ws::{CloseCode, Frame, Message};
use futures_util::future::{self, AbortHandle, Abortable};
use futures_util::stream::{self, StreamExt};
use hdrhistogram::Histogram;
use tokio::sync::watch;

use crate::deliveries::Deliveries;
use crate::process::STARTUP_TIMEOUT;
use crate::stats::{merge_histogram, new_histogram, Kinds};
use crate::target::{Target, CONNECT_TIMEOUT};

/// The subscription every socket opens, and the id the server echoes in `subscribed`/`change`.
const SUBSCRIBE_FRAME: &str = r#"{"type":"subscribe","id":"s","entity":"Bench"}"#;
const SUB_ID: &str = "s";
/// The application-level ping sent to sampled sockets in the verify stage.
const PING_FRAME: &str = r#"{"type":"ping"}"#;
/// Default WebSocket handshakes (connect + upgrade + subscribe) in flight at once, over all
/// client threads, so the server's listen backlog is not overrun.
pub const DEFAULT_WS_BATCH: usize = 200;
/// Default client threads for the `ws` and `idle` modes. On 2 cores shared with the server, 2
/// beat 1: 1,000 subscribers at 200 writes/s gave p50 3.0 ms / p99 8.4-8.8 ms against
/// p50 3.4-3.8 ms / p99 9.5-17.6 ms, and 10,000 idle sockets opened in 0.49 s against 0.85 s.
pub const DEFAULT_WS_THREADS: usize = 2;
/// Tries per socket before its connect counts as failed, and the pause before the n-th retry
/// (n × this).
const WS_CONNECT_ATTEMPTS: u32 = 5;
const WS_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// TCP connect + HTTP upgrade of one socket.
const WS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// From sending `subscribe` to reading `subscribed`.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Upper bound for opening all sockets; the ones not open by then count as failed.
const OPEN_PHASE_TIMEOUT: Duration = Duration::from_secs(300);
/// Sending the close frame when a socket is let go.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a sampled socket may take to answer `{"type":"ping"}`.
const PONG_TIMEOUT: Duration = Duration::from_secs(5);
/// `errno` for "too many open files".
const EMFILE: &str = "os error 24";

/// A client WebSocket as awc hands it out.
type WsFramed = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// What the coordinator tells the sockets; it changes once per run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stage {
    /// Keep reading frames and answering pings.
    Hold,
    /// Sampled sockets send `{"type":"ping"}` and wait for the pong; then every socket closes.
    Verify,
    /// Close and finish.
    Stop,
}

/// How the sockets of a run connect and what they do.
pub struct FleetSpec<'a> {
    /// `ws://HOST:PORT/ws`, with `?token=` when a token is known.
    pub url: String,
    /// Send `subscribe` and wait for `subscribed` before a socket counts as open.
    pub subscribe: bool,
    /// Handshakes in flight per client thread.
    pub batch_per_thread: usize,
    /// `ws` mode: change frames are matched to the writes.
    pub deliveries: Option<&'a Deliveries>,
    /// `idle` mode: sockets whose index is a multiple of this take part in the ping check
    /// (0: none).
    pub sample_every: usize,
}

/// All threads' sockets are open (or failed).
pub struct Opened {
    pub sockets: usize,
    pub took: Duration,
}

/// Runs `sockets` sockets spread over `threads` client threads. Once every thread has opened
/// its share, `during` runs on this thread and returns the stage to move the sockets to (and a
/// value passed back); the threads then finish and their tallies are merged.
pub fn run_fleet<R>(
    spec: &FleetSpec<'_>,
    sockets: usize,
    threads: usize,
    during: impl FnOnce(&Opened) -> (Stage, R),
) -> Result<(Opened, FleetTally, R), String> {
    let (stage_tx, stage_rx) = watch::channel(Stage::Hold);
    let (ready_tx, ready_rx) = mpsc::channel::<usize>();
    let started = Instant::now();
    std::thread::scope(|scope| {
        // Owned by this closure: an early return drops it, which stops every socket, before the
        // scope joins the threads.
        let stage_tx = stage_tx;
        let (per, extra) = (sockets / threads, sockets % threads);
        let mut handles = Vec::with_capacity(threads);
        let mut first = 0;
        for t in 0..threads {
            let range = first..first + per + usize::from(t < extra);
            first = range.end;
            let (ready, stage) = (ready_tx.clone(), stage_rx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("ws-{t}"))
                .spawn_scoped(scope, move || fleet_thread(spec, range, ready, stage))
                .map_err(|e| format!("cannot start a client thread: {e}"))?;
            handles.push(spawned);
        }
        drop(ready_tx);

        let deadline = started + OPEN_PHASE_TIMEOUT + STARTUP_TIMEOUT;
        let (mut open, mut heard) = (0, 0);
        while heard < threads {
            match ready_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(n) => {
                    heard += 1;
                    open += n;
                }
                // Timed out, or every thread has finished (failed) without a word.
                Err(_) => break,
            }
        }
        let opened = Opened { sockets: open, took: started.elapsed() };
        let (stage, value) = during(&opened);
        // Sockets of a thread that is gone have nobody to tell; that is fine.
        let _ = stage_tx.send(stage);
        drop(stage_tx);

        let mut total = FleetTally::new()?;
        let mut failure = None;
        for handle in handles {
            match handle.join() {
                Ok(Ok(tally)) => total.merge(tally)?,
                Ok(Err(e)) => failure = Some(e),
                Err(_) => failure = Some("a client thread panicked".into()),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok((opened, total, value)),
        }
    })
}

/// One client thread: its own actix System and client, opening `range` sockets (at most
/// `batch_per_thread` at a time), then holding them until the stage changes.
fn fleet_thread(
    spec: &FleetSpec<'_>,
    range: Range<usize>,
    ready: mpsc::Sender<usize>,
    mut stage: watch::Receiver<Stage>,
) -> Result<FleetTally, String> {
    let total = range.len();
    let tally = match FleetTally::new() {
        Ok(t) => RefCell::new(t),
        Err(e) => {
            let _ = ready.send(0);
            return Err(e);
        }
    };
    actix_web::rt::System::new().block_on(async {
        let client = ws_client();
        let opened = RefCell::new(Vec::with_capacity(total));
        let open_all = stream::iter(range).for_each_concurrent(spec.batch_per_thread, |index| {
            let (client, opened, tally) = (&client, &opened, &tally);
            async move {
                match open_socket(client, spec).await {
                    Ok(framed) => opened.borrow_mut().push((index, framed)),
                    Err(e) => tally.borrow_mut().open_failed(e, 1),
                }
            }
        });
        if actix_web::rt::time::timeout(OPEN_PHASE_TIMEOUT, open_all).await.is_err() {
            let mut t = tally.borrow_mut();
            let missing = (total as u64).saturating_sub(opened.borrow().len() as u64 + t.open_failed);
            t.open_failed(format!("not open within {} s", OPEN_PHASE_TIMEOUT.as_secs()), missing);
        }
        let opened = opened.into_inner();
        tally.borrow_mut().opened = opened.len() as u64;
        let _ = ready.send(opened.len());

        let current = Cell::new(Stage::Hold);
        let mut handles = Vec::with_capacity(opened.len());
        let sockets: Vec<_> = opened
            .into_iter()
            .map(|(index, framed)| {
                let (handle, registration) = AbortHandle::new_pair();
                handles.push(handle);
                run_socket(spec, index, framed, registration, &tally, &current)
            })
            .collect();
        // One waiter per thread on the shared channel; the sockets are told by abort handles.
        let watcher = async {
            let next = if stage.changed().await.is_ok() { *stage.borrow() } else { Stage::Stop };
            current.set(next);
            for handle in &handles {
                handle.abort();
            }
        };
        future::join(watcher, future::join_all(sockets)).await;
    });
    Ok(tally.into_inner())
}

fn ws_client() -> awc::Client {
    // No cap on the connector: every socket is its own long-lived connection.
    let connector = awc::Connector::new().limit(0).timeout(CONNECT_TIMEOUT);
    awc::Client::builder().connector(connector).timeout(WS_HANDSHAKE_TIMEOUT).finish()
}

/// `ws://HOST:PORT/ws?token=...` for a target.
pub fn ws_url(target: &Target) -> String {
    let host = target.base.strip_prefix("http://").unwrap_or(&target.base);
    match &target.token {
        Some(token) => format!("ws://{host}/ws?token={}", percent_encode(token)),
        None => format!("ws://{host}/ws"),
    }
}

/// Connects one socket (with retries) and subscribes it if the spec says so.
async fn open_socket(client: &awc::Client, spec: &FleetSpec<'_>) -> Result<WsFramed, String> {
    let mut last_error = String::new();
    for attempt in 0..WS_CONNECT_ATTEMPTS {
        if attempt > 0 {
            actix_web::rt::time::sleep(WS_RETRY_BACKOFF * attempt).await;
        }
        let connect = client.ws(spec.url.as_str()).connect();
        match actix_web::rt::time::timeout(WS_HANDSHAKE_TIMEOUT, connect).await {
            Ok(Ok((_, mut framed))) => {
                if spec.subscribe {
                    subscribe(&mut framed).await?;
                }
                return Ok(framed);
            }
            Ok(Err(awc::error::WsClientError::InvalidResponseStatus(status))) => {
                last_error = format!("upgrade refused: HTTP {status}");
            }
            Ok(Err(e)) => last_error = e.to_string(),
            Err(_) => last_error = format!("no upgrade within {} s", WS_HANDSHAKE_TIMEOUT.as_secs()),
        }
    }
    Err(last_error)
}

/// Sends the subscribe frame and waits (at most [`SUBSCRIBE_TIMEOUT`]) for `subscribed`.
async fn subscribe(framed: &mut WsFramed) -> Result<(), String> {
    send(framed, Message::Text(SUBSCRIBE_FRAME.into())).await?;
    let reply = async {
        // Ends with the reply, an error, the socket, or the timeout around it.
        loop {
            match framed.next().await {
                Some(Ok(Frame::Text(text))) => {
                    let frame: serde_json::Value =
                        serde_json::from_slice(&text).map_err(|e| format!("unparsable reply to subscribe: {e}"))?;
                    match frame.get("type").and_then(serde_json::Value::as_str) {
                        Some("subscribed") if frame.get("id").and_then(serde_json::Value::as_str) == Some(SUB_ID) => {
                            return Ok(());
                        }
                        Some("error") => return Err(format!("subscribe refused: {}", error_frame_kind(&frame))),
                        _ => {}
                    }
                }
                Some(Ok(Frame::Ping(payload))) => send(framed, Message::Pong(payload)).await?,
                Some(Ok(Frame::Close(reason))) => {
                    return Err(format!("closed while subscribing: {}", close_text(&reason)))
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(format!("protocol error while subscribing: {e}")),
                None => return Err("connection closed while subscribing".into()),
            }
        }
    };
    actix_web::rt::time::timeout(SUBSCRIBE_TIMEOUT, reply)
        .await
        .unwrap_or_else(|_| Err(format!("no \"subscribed\" reply within {} s", SUBSCRIBE_TIMEOUT.as_secs())))
}

/// Writes one frame and flushes it.
async fn send(framed: &mut WsFramed, message: Message) -> Result<(), String> {
    Pin::new(&mut *framed).write(message).map_err(|e| format!("encoding a frame: {e}"))?;
    std::future::poll_fn(|cx| Pin::new(&mut *framed).flush::<Message>(cx))
        .await
        .map_err(|e| format!("sending a frame: {e}"))
}

/// One open socket for the rest of the run: reads until the stage changes (or the socket ends),
/// then, in the verify stage, checks `{"type":"ping"}` on sampled sockets, and closes.
async fn run_socket(
    spec: &FleetSpec<'_>,
    index: usize,
    mut framed: WsFramed,
    registration: future::AbortRegistration,
    tally: &RefCell<FleetTally>,
    stage: &Cell<Stage>,
) {
    let mut changes = 0;
    let held = Abortable::new(hold(&mut framed, spec, tally, &mut changes), registration).await;
    let alive = match held {
        Ok(why) => {
            tally.borrow_mut().disconnected(why);
            false
        }
        Err(future::Aborted) => true,
    };
    tally.borrow_mut().socket_done(changes, alive);
    if !alive {
        return;
    }
    if stage.get() == Stage::Verify && spec.sample_every > 0 && index.is_multiple_of(spec.sample_every) {
        let answered = actix_web::rt::time::timeout(PONG_TIMEOUT, await_pong(&mut framed))
            .await
            .unwrap_or_else(|_| Err(format!("no pong within {} s", PONG_TIMEOUT.as_secs())));
        tally.borrow_mut().pong(answered);
    }
    let close = send(&mut framed, Message::Close(Some(CloseCode::Normal.into())));
    let _ = actix_web::rt::time::timeout(CLOSE_TIMEOUT, close).await;
}

/// Reads frames, answering pings, until the socket ends; returns why. It has no end of its own
/// while the socket lives: the caller aborts it when the coordinator moves the stage on.
async fn hold(framed: &mut WsFramed, spec: &FleetSpec<'_>, tally: &RefCell<FleetTally>, changes: &mut u64) -> String {
    loop {
        let Some(item) = framed.next().await else { return "connection closed by the server (EOF)".into() };
        match item {
            Ok(Frame::Text(text)) => tally.borrow_mut().on_text(&text, spec.deliveries, changes),
            Ok(Frame::Ping(payload)) => {
                if let Err(e) = send(framed, Message::Pong(payload)).await {
                    return e;
                }
                tally.borrow_mut().pings_answered += 1;
            }
            Ok(Frame::Pong(_)) => {}
            Ok(Frame::Close(reason)) => return format!("closed by the server: {}", close_text(&reason)),
            Ok(Frame::Binary(_) | Frame::Continuation(_)) => {
                tally.borrow_mut().error_frames.add("binary frame".into(), 1)
            }
            Err(e) => return format!("protocol error: {e}"),
        }
    }
}

/// Sends `{"type":"ping"}` and reads until `{"type":"pong"}` (the caller bounds the time).
async fn await_pong(framed: &mut WsFramed) -> Result<(), String> {
    send(framed, Message::Text(PING_FRAME.into())).await?;
    loop {
        match framed.next().await {
            Some(Ok(Frame::Text(text))) => {
                let frame: Option<serde_json::Value> = serde_json::from_slice(&text).ok();
                if frame.as_ref().and_then(|f| f.get("type")).and_then(serde_json::Value::as_str) == Some("pong") {
                    return Ok(());
                }
            }
            Some(Ok(Frame::Ping(payload))) => send(framed, Message::Pong(payload)).await?,
            Some(Ok(Frame::Close(reason))) => return Err(format!("closed by the server: {}", close_text(&reason))),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("protocol error: {e}")),
            None => return Err("connection closed".into()),
        }
    }
}

fn close_text(reason: &Option<awc::ws::CloseReason>) -> String {
    match reason {
        Some(r) => format!(
            "close code {} ({:?}){}",
            u16::from(r.code),
            r.code,
            r.description.as_deref().map_or_else(String::new, |d| format!(" \"{d}\""))
        ),
        None => "no close reason".into(),
    }
}

/// `CODE: message` of an error frame.
fn error_frame_kind(frame: &serde_json::Value) -> String {
    let field = |name: &str| frame.get(name).and_then(serde_json::Value::as_str).unwrap_or("?").to_string();
    format!("{}: {}", field("code"), field("message"))
}

/// What a text frame from the server is, read cheaply (every change frame goes through this).
#[derive(Debug, PartialEq, Eq)]
enum Inbound {
    /// A change frame, with its row's `n` when it has one.
    Change(Option<u64>),
    Other,
}

/// Change frames are `{"type":"change","sub":..,"event":{..,"data":{..,"n":K,..},..}}`,
/// serialised compactly by the server; the first `"n":` key after `"data":` is the row's `n`
/// (a quote followed by `n":` cannot occur inside a JSON string, where quotes are escaped).
fn classify(frame: &[u8]) -> Inbound {
    const CHANGE: &[u8] = br#"{"type":"change""#;
    if !frame.starts_with(CHANGE) {
        return Inbound::Other;
    }
    let after = |haystack: &[u8], needle: &[u8]| {
        haystack.windows(needle.len()).position(|w| w == needle).map(|at| at + needle.len())
    };
    let n = after(frame, br#""data":{"#).and_then(|data| {
        let rest = &frame[data..];
        let digits = &rest[after(rest, br#""n":"#)?..];
        let end = digits.iter().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
        std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
    });
    Inbound::Change(n)
}

/// What the sockets of one thread (then of all threads) saw.
pub struct FleetTally {
    pub opened: u64,
    pub open_failed: u64,
    pub open_errors: Kinds,
    /// Change frames matched to a write, and their write-send → read latency (µs).
    pub received: u64,
    pub hist: Histogram<u64>,
    /// Change frames for rows this run did not write (or without a readable `n`).
    pub unmatched: u64,
    /// Fewest and most change frames read by one socket (`None`: no socket yet).
    per_socket_min: Option<u64>,
    pub per_socket_max: u64,
    pub last_rx: Option<Instant>,
    pub error_frames: Kinds,
    pub disconnects: u64,
    pub disconnect_kinds: Kinds,
    pub pings_answered: u64,
    /// Sockets still open when the stage moved on.
    pub alive_at_end: u64,
    pub pongs_ok: u64,
    pub pongs_failed: u64,
    pub pong_failures: Kinds,
}

impl FleetTally {
    fn new() -> Result<FleetTally, String> {
        Ok(FleetTally {
            opened: 0,
            open_failed: 0,
            open_errors: Kinds::default(),
            received: 0,
            hist: new_histogram()?,
            unmatched: 0,
            per_socket_min: None,
            per_socket_max: 0,
            last_rx: None,
            error_frames: Kinds::default(),
            disconnects: 0,
            disconnect_kinds: Kinds::default(),
            pings_answered: 0,
            alive_at_end: 0,
            pongs_ok: 0,
            pongs_failed: 0,
            pong_failures: Kinds::default(),
        })
    }

    fn open_failed(&mut self, why: String, n: u64) {
        if n > 0 {
            self.open_failed += n;
            self.open_errors.add(why, n);
        }
    }

    fn on_text(&mut self, text: &[u8], deliveries: Option<&Deliveries>, changes: &mut u64) {
        match classify(text) {
            Inbound::Change(k) => {
                *changes += 1;
                let now = Instant::now();
                match (deliveries, k) {
                    (Some(d), Some(k)) => match d.latency_us(k, now) {
                        Some(us) => {
                            self.received += 1;
                            d.received.fetch_add(1, Ordering::Relaxed);
                            self.hist.saturating_record(us.max(1));
                            self.last_rx = Some(self.last_rx.map_or(now, |last| last.max(now)));
                        }
                        None => self.unmatched += 1,
                    },
                    _ => self.unmatched += 1,
                }
            }
            Inbound::Other => match serde_json::from_slice::<serde_json::Value>(text) {
                Ok(frame) if frame.get("type").and_then(serde_json::Value::as_str) == Some("error") => {
                    self.error_frames.add(error_frame_kind(&frame), 1);
                }
                Ok(_) => {}
                Err(_) => self.error_frames.add("unparsable text frame".into(), 1),
            },
        }
    }

    fn disconnected(&mut self, why: String) {
        self.disconnects += 1;
        self.disconnect_kinds.add(why, 1);
    }

    fn socket_done(&mut self, changes: u64, alive: bool) {
        self.per_socket_min = Some(self.per_socket_min.map_or(changes, |m| m.min(changes)));
        self.per_socket_max = self.per_socket_max.max(changes);
        if alive {
            self.alive_at_end += 1;
        }
    }

    fn pong(&mut self, outcome: Result<(), String>) {
        match outcome {
            Ok(()) => self.pongs_ok += 1,
            Err(why) => {
                self.pongs_failed += 1;
                self.pong_failures.add(why, 1);
            }
        }
    }

    pub fn per_socket_min(&self) -> u64 {
        self.per_socket_min.unwrap_or(0)
    }

    fn merge(&mut self, other: FleetTally) -> Result<(), String> {
        merge_histogram(&mut self.hist, &other.hist)?;
        self.opened += other.opened;
        self.open_failed += other.open_failed;
        self.open_errors.merge(other.open_errors);
        self.received += other.received;
        self.unmatched += other.unmatched;
        self.per_socket_min = match (self.per_socket_min, other.per_socket_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.per_socket_max = self.per_socket_max.max(other.per_socket_max);
        self.last_rx = self.last_rx.max(other.last_rx);
        self.error_frames.merge(other.error_frames);
        self.disconnects += other.disconnects;
        self.disconnect_kinds.merge(other.disconnect_kinds);
        self.pings_answered += other.pings_answered;
        self.alive_at_end += other.alive_at_end;
        self.pongs_ok += other.pongs_ok;
        self.pongs_failed += other.pongs_failed;
        self.pong_failures.merge(other.pong_failures);
        Ok(())
    }
}

pub fn print_open_errors(fleet: &FleetTally, indent: &str) {
    for (kind, n) in fleet.open_errors.iter() {
        println!("{indent}                    {n} x {kind}");
    }
    let emfile: u64 = fleet.open_errors.iter().filter(|(k, _)| k.contains(EMFILE)).map(|(_, n)| *n).sum();
    if emfile > 0 {
        println!(
            "{indent}                    {emfile} opens failed with EMFILE (too many open files): raise the open-file \
             limit (ulimit -n) of this process and the server, or open fewer sockets"
        );
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a query value).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_n_from_change_frames() {
        let frame = br#"{"type":"change","sub":"s","event":{"seq":7,"entity":"Bench","row_id":"r1","kind":"insert","data":{"id":"r1","title":"bench 42","n":42,"done":0},"timestamp":"t"}}"#;
        assert_eq!(classify(frame), Inbound::Change(Some(42)));
        let no_n = br#"{"type":"change","sub":"s","event":{"seq":7,"data":{"id":"x","title":"\"n\":9"}}}"#;
        assert_eq!(classify(no_n), Inbound::Change(None));
        assert_eq!(classify(br#"{"type":"subscribed","id":"s","seq":0}"#), Inbound::Other);
        assert_eq!(classify(br#"{"type":"error","code":"SLOW_CONSUMER","message":"m"}"#), Inbound::Other);
    }

    #[test]
    fn encodes_tokens_for_the_query() {
        assert_eq!(percent_encode("abc-123_~."), "abc-123_~.");
        assert_eq!(percent_encode("a b&c=d"), "a%20b%26c%3Dd");
    }
}

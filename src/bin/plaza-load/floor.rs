//! The floor under fan-out on this machine (`plaza-load ws --floor`): the same sockets, write
//! rate and frame size as the `ws` run, over plain loopback TCP with nothing in between. Sender
//! threads (as many as the server has HTTP workers) write one frame to each of their sockets per
//! write; reader threads (as many as the `ws` client's) wait in `epoll` and read. No server, no
//! WebSocket framing, no JSON, no histogram per frame on the reading side beyond a `Vec` push:
//! what the kernel alone costs to move one frame to each socket and wake its reader. Its
//! latency is the time from a write's start to a frame being read, as in the `ws` run, so a
//! Plaza p99 can be read against the p99 that no server on this machine could beat.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// The size of a change frame for a `Bench` insert as the `ws` run receives it (its JSON plus a
/// 4-byte WebSocket header, rounded up).
pub const FRAME_BYTES: usize = 320;
/// A reader gives up when no frame arrived for this long (a lost frame would otherwise hang).
const QUIET_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Spec {
    pub sockets: usize,
    pub senders: usize,
    pub readers: usize,
    pub writes_per_sec: u64,
    pub writes: u64,
}

pub struct Floor {
    /// Nanoseconds from a write's start to each frame being read, sorted.
    latencies: Vec<u64>,
    expected: u64,
    /// This process's CPU time (both sides) per frame read.
    pub cpu_per_frame: Duration,
}

impl Floor {
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let Some(last) = self.latencies.len().checked_sub(1) else { return 0.0 };
        self.latencies[(last as f64 * q) as usize] as f64 / 1e6
    }

    pub fn summary(&self) -> String {
        format!(
            "p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2} ms, {} of {} frames read, {:.2} µs CPU per frame (sender + reader)",
            self.quantile_ms(0.5),
            self.quantile_ms(0.95),
            self.quantile_ms(0.99),
            self.quantile_ms(1.0),
            self.latencies.len(),
            self.expected,
            self.cpu_per_frame.as_secs_f64() * 1e6
        )
    }
}

pub fn measure(spec: &Spec) -> Result<Floor, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("floor: cannot listen: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut readers_side = Vec::with_capacity(spec.sockets);
    let mut senders_side = Vec::with_capacity(spec.sockets);
    for _ in 0..spec.sockets {
        let reading = TcpStream::connect(addr).map_err(|e| format!("floor: cannot connect: {e}"))?;
        let (sending, _) = listener.accept().map_err(|e| format!("floor: cannot accept: {e}"))?;
        for s in [&reading, &sending] {
            s.set_nodelay(true).map_err(|e| e.to_string())?;
        }
        reading.set_nonblocking(true).map_err(|e| e.to_string())?;
        readers_side.push(reading);
        senders_side.push(sending);
    }
    let cpu_before = process_cpu();
    let started = Instant::now();
    let expected = spec.writes * spec.sockets as u64;
    let mut readers = Vec::new();
    let mut sockets = readers_side.into_iter();
    for _ in 0..spec.readers {
        let mine: Vec<TcpStream> = sockets.by_ref().take(spec.sockets.div_ceil(spec.readers)).collect();
        let writes = spec.writes;
        readers.push(std::thread::spawn(move || read_frames(mine, writes, started)));
    }
    let interval = Duration::from_secs_f64(1.0 / spec.writes_per_sec as f64);
    let mut senders = Vec::new();
    let mut sockets = senders_side.into_iter();
    for _ in 0..spec.senders {
        let mut mine: Vec<TcpStream> = sockets.by_ref().take(spec.sockets.div_ceil(spec.senders)).collect();
        let writes = spec.writes;
        senders.push(std::thread::spawn(move || -> Result<Vec<TcpStream>, String> {
            let mut frame = [b' '; FRAME_BYTES];
            for k in 0..writes {
                if let Some(wait) = (started + interval * k as u32).checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                frame[..8].copy_from_slice(&(started.elapsed().as_nanos() as u64).to_le_bytes());
                for s in mine.iter_mut() {
                    s.write_all(&frame).map_err(|e| format!("floor: write failed: {e}"))?;
                }
            }
            Ok(mine)
        }));
    }
    // The sending sockets stay open until every reader is done.
    let mut open = Vec::new();
    for sender in senders {
        open.push(sender.join().map_err(|_| "floor: a sender thread panicked".to_string())??);
    }
    let mut latencies = Vec::with_capacity(expected as usize);
    for reader in readers {
        latencies.extend(reader.join().map_err(|_| "floor: a reader thread panicked".to_string())??);
    }
    drop(open);
    let cpu = process_cpu().saturating_sub(cpu_before);
    latencies.sort_unstable();
    let cpu_per_frame = cpu / (latencies.len().max(1) as u32);
    Ok(Floor { latencies, expected, cpu_per_frame })
}

/// Reads frames until this thread's sockets have all of theirs (or nothing arrives for
/// [`QUIET_TIMEOUT`]); answers each frame's latency.
fn read_frames(sockets: Vec<TcpStream>, writes: u64, started: Instant) -> Result<Vec<u64>, String> {
    let want = writes * sockets.len() as u64;
    let mut latencies = Vec::with_capacity(want as usize);
    // SAFETY: plain epoll calls on descriptors this thread owns; `events` outlives each wait.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(format!("floor: epoll_create1 failed: {}", std::io::Error::last_os_error()));
    }
    for (i, s) in sockets.iter().enumerate() {
        let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut event) } != 0 {
            return Err(format!("floor: epoll_ctl failed: {}", std::io::Error::last_os_error()));
        }
    }
    let mut partial: Vec<Vec<u8>> = vec![Vec::new(); sockets.len()];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_frame = Instant::now();
    while (latencies.len() as u64) < want {
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, 100) };
        if n <= 0 {
            if last_frame.elapsed() > QUIET_TIMEOUT {
                break;
            }
            continue;
        }
        for event in &events[..n as usize] {
            let i = event.u64 as usize;
            loop {
                let got = unsafe { libc::read(sockets[i].as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                if got <= 0 {
                    break;
                }
                let now = started.elapsed().as_nanos() as u64;
                last_frame = Instant::now();
                let pending = &mut partial[i];
                pending.extend_from_slice(&buf[..got as usize]);
                let whole = pending.len() / FRAME_BYTES;
                for frame in pending.chunks_exact(FRAME_BYTES) {
                    let sent = u64::from_le_bytes(frame[..8].try_into().unwrap_or_default());
                    latencies.push(now.saturating_sub(sent));
                }
                pending.drain(..whole * FRAME_BYTES);
            }
        }
    }
    unsafe { libc::close(epoll) };
    Ok(latencies)
}

/// This process's user + system CPU time.
fn process_cpu() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes the struct passed by pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

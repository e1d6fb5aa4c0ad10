//! The shards' tick clock: one thread beside each shard arbiter that wakes each of its shards
//! when the shard's next tick is due, and watches that arbiter for a runaway tick.
//!
//! Why not `ctx.run_later`: tokio's timer rounds every deadline up to the next whole
//! millisecond and fires only when the arbiter's event loop next polls it, so at 30 Hz that
//! alone made a tick 0.5–1.5 ms late on an idle machine. This thread sleeps until the
//! earliest due tick with the OS's nanosecond timer and sends that shard a [`Tick`].
//!
//! Priority ([`ShardPriority`]): a tick that waits for a core behind socket writes, the load
//! of other processes or the scheduler's time slices is late (nice -10 still left 1% of ticks
//! 3–5 ms late with 1,000 busy sockets on 2 cores; the real-time class, under 0.25 ms). With
//! `Realtime` the arbiters run in `SCHED_FIFO` at priority 1 and the clocks at 2, so a clock
//! preempts its arbiter: a tick still running after [`RUNAWAY_TICK`] (a simulation stuck in a
//! loop) makes the clock drop that arbiter to normal priority for good and log it, so simulation
//! code can never hold a core from the rest of the server. Where the OS refuses a class (no
//! `CAP_SYS_NICE` or `RLIMIT_RTPRIO`, a seccomp filter) the threads step down to the next one
//! and the log says so once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::{Message, Recipient};

/// Nice value of the shard threads at `High` priority (and `Realtime` when refused).
pub const SHARD_THREAD_NICE: i32 = -10;
/// `SCHED_FIFO` priorities (1 is the lowest real-time one): clocks above their arbiters.
const ARBITER_RT_PRIORITY: i32 = 1;
const CLOCK_RT_PRIORITY: i32 = 2;
/// A tick running this long is taken for a runaway: its arbiter loses its raised priority.
pub const RUNAWAY_TICK: Duration = Duration::from_millis(200);
/// How often a clock with nothing due looks at its arbiter.
const WATCH_EVERY: Duration = Duration::from_millis(50);

/// How the shard threads are scheduled (`PLAZA_SHARD_PRIORITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardPriority {
    /// `SCHED_FIFO`, falling back to `High` when refused.
    Realtime,
    /// Nice -10, falling back to `Normal` when refused.
    High,
    /// As every other thread.
    Normal,
}

impl ShardPriority {
    pub fn parse(s: &str) -> Option<ShardPriority> {
        match s {
            "realtime" => Some(ShardPriority::Realtime),
            "high" => Some(ShardPriority::High),
            "normal" => Some(ShardPriority::Normal),
            _ => None,
        }
    }
}

/// "Your next tick is due now."
#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick;

struct Wake {
    due: Instant,
    shard: Recipient<Tick>,
}

/// What the clock watches of its arbiter.
#[derive(Default)]
struct Watch {
    /// When the running tick began (µs since [`epoch`]), 0 when none runs.
    busy_since: AtomicU64,
    /// The arbiter's thread id, once it adopted its priority.
    tid: AtomicI32,
    demoted: AtomicBool,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn micros_since_epoch() -> u64 {
    (epoch().elapsed().as_micros() as u64).max(1)
}

/// A handle to one clock thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone)]
pub struct TickClock {
    wakes: Sender<Wake>,
    watch: Arc<Watch>,
    priority: ShardPriority,
}

impl TickClock {
    /// Starts a clock thread named `name`.
    pub fn start(name: String, priority: ShardPriority) -> std::io::Result<TickClock> {
        let (wakes, rx) = mpsc::channel();
        let watch = Arc::new(Watch::default());
        let watched = watch.clone();
        std::thread::Builder::new().name(name).spawn(move || {
            raise_priority("shard clock", priority, CLOCK_RT_PRIORITY);
            run(rx, &watched);
        })?;
        Ok(TickClock { wakes, watch, priority })
    }

    /// Called on the arbiter's thread: raises its priority and lets the clock watch it.
    pub fn adopt_arbiter_thread(&self) {
        self.watch.tid.store(current_tid(), Ordering::Release);
        raise_priority("shard arbiter", self.priority, ARBITER_RT_PRIORITY);
    }

    /// Sends `shard` a [`Tick`] at `due` (at once when `due` has passed).
    pub fn wake_at(&self, due: Instant, shard: Recipient<Tick>) {
        // The thread only ends with the last handle, so this cannot fail while `self` lives.
        let _ = self.wakes.send(Wake { due, shard });
    }

    /// A tick begins on the arbiter (simulation code is about to run).
    pub fn tick_started(&self) {
        self.watch.busy_since.store(micros_since_epoch(), Ordering::Release);
    }

    pub fn tick_ended(&self) {
        self.watch.busy_since.store(0, Ordering::Release);
    }
}

fn run(rx: Receiver<Wake>, watch: &Watch) {
    // Earliest due first; `seq` keeps equal instants apart (and in registration order).
    let mut queue: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut shards: HashMap<u64, Recipient<Tick>> = HashMap::new();
    let mut seq = 0u64;
    loop {
        let wait = queue.peek().map_or(WATCH_EVERY, |Reverse((due, _))| due.saturating_duration_since(Instant::now()).min(WATCH_EVERY));
        match rx.recv_timeout(wait) {
            Ok(wake) => {
                seq += 1;
                queue.push(Reverse((wake.due, seq)));
                shards.insert(seq, wake.shard);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let now = Instant::now();
        while let Some(Reverse((due, id))) = queue.peek().copied() {
            if due > now {
                break;
            }
            queue.pop();
            if let Some(shard) = shards.remove(&id) {
                shard.do_send(Tick);
            }
        }
        check_runaway(watch);
    }
}

/// Drops the arbiter to normal priority when its current tick has run past [`RUNAWAY_TICK`].
fn check_runaway(watch: &Watch) {
    let since = watch.busy_since.load(Ordering::Acquire);
    if since == 0 || watch.demoted.load(Ordering::Relaxed) {
        return;
    }
    let running = Duration::from_micros(micros_since_epoch().saturating_sub(since));
    let tid = watch.tid.load(Ordering::Acquire);
    if running < RUNAWAY_TICK || tid == 0 {
        return;
    }
    watch.demoted.store(true, Ordering::Relaxed);
    set_normal(tid);
    tracing::warn!(running_ms = running.as_millis() as u64, "a shard tick is still running: its shard thread drops to normal priority for good");
}

#[cfg(target_os = "linux")]
fn current_tid() -> i32 {
    // SAFETY: gettid has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

#[cfg(not(target_os = "linux"))]
fn current_tid() -> i32 {
    0
}

#[cfg(target_os = "linux")]
fn set_normal(tid: i32) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscalls on a thread of this process, `param` outlives the call.
    unsafe {
        libc::sched_setscheduler(tid, libc::SCHED_OTHER, &param);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 0);
    }
}

#[cfg(not(target_os = "linux"))]
fn set_normal(_tid: i32) {}

/// Asks the kernel to schedule the calling thread at `priority` (real-time at `rt_priority`),
/// stepping down when refused; says once per process what it settled for.
fn raise_priority(what: &str, priority: ShardPriority, rt_priority: i32) {
    static SETTLED: std::sync::Once = std::sync::Once::new();
    let (got, error) = try_raise(priority, rt_priority);
    if got != priority {
        SETTLED.call_once(|| {
            tracing::info!(what, asked = ?priority, got = ?got, error = %error.map_or_else(String::new, |e| e.to_string()), "shard threads run at a lower priority than asked (not permitted here)");
        });
    }
}

#[cfg(target_os = "linux")]
fn try_raise(priority: ShardPriority, rt_priority: i32) -> (ShardPriority, Option<std::io::Error>) {
    let mut error = None;
    if priority == ShardPriority::Realtime {
        let param = libc::sched_param { sched_priority: rt_priority };
        // SAFETY: the calling thread (0), `param` outlives the call.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
            return (ShardPriority::Realtime, None);
        }
        error = Some(std::io::Error::last_os_error());
    }
    if priority != ShardPriority::Normal {
        // SAFETY: a plain syscall on the calling thread.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, current_tid() as libc::id_t, SHARD_THREAD_NICE) } == 0 {
            return (ShardPriority::High, error);
        }
        error = Some(std::io::Error::last_os_error());
    }
    (ShardPriority::Normal, error)
}

#[cfg(not(target_os = "linux"))]
fn try_raise(_: ShardPriority, _: i32) -> (ShardPriority, Option<std::io::Error>) {
    (ShardPriority::Normal, None)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A tick running past `RUNAWAY_TICK` costs its thread the raised priority; a short one
    /// does not.
    #[test]
    fn a_runaway_tick_drops_its_thread_to_normal_priority() {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let arbiter = std::thread::spawn(move || {
            let _ = try_raise(ShardPriority::Realtime, ARBITER_RT_PRIORITY);
            tid_tx.send(current_tid()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        let policy = || unsafe { libc::sched_getscheduler(tid) };
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
        let raised = (policy(), nice());
        let watch = Watch::default();
        watch.tid.store(tid, Ordering::Release);

        watch.busy_since.store(micros_since_epoch(), Ordering::Release);
        check_runaway(&watch);
        assert!(!watch.demoted.load(Ordering::Relaxed), "a tick that just began is no runaway");
        assert_eq!((policy(), nice()), raised);

        let long_ago = micros_since_epoch().saturating_sub(RUNAWAY_TICK.as_micros() as u64 + 1_000).max(1);
        std::thread::sleep(RUNAWAY_TICK.saturating_sub(epoch().elapsed()));
        watch.busy_since.store(long_ago.max(1), Ordering::Release);
        check_runaway(&watch);
        assert!(watch.demoted.load(Ordering::Relaxed));
        assert_eq!((policy(), nice()), (libc::SCHED_OTHER, 0), "normal priority after a runaway tick");
        drop(done_tx);
        arbiter.join().unwrap();
    }
}

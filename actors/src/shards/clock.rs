//! The shards' tick clock: one thread beside each shard arbiter that wakes each of its shards
//! when the shard's next tick is due.
//!
//! Why not `ctx.run_later`: tokio's timer rounds every deadline up to the next whole
//! millisecond and fires only when the arbiter's event loop next polls it, so at 30 Hz that
//! alone made a tick 0.5–1.5 ms late on an idle machine. This thread sleeps until the
//! earliest due tick with the OS's nanosecond timer (a futex wait; the kernel's timer slack is
//! 50 µs) and sends that shard a [`Tick`].
//!
//! Both the clock threads and the shard arbiters ask for a higher scheduling priority
//! ([`raise_priority`]): a tick that waits behind socket writes or a compiler for a core is
//! late. Where that is not permitted (an unprivileged user without `RLIMIT_NICE`, a seccomp
//! filter), they run at normal priority and say so once in the log.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use actix::{Message, Recipient};

/// Nice value asked for the shard threads (0 is normal, -20 the highest).
pub const SHARD_THREAD_NICE: i32 = -10;

/// "Your next tick is due now."
#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick;

struct Wake {
    due: Instant,
    shard: Recipient<Tick>,
}

/// A handle to one clock thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone)]
pub struct TickClock {
    wakes: Sender<Wake>,
}

impl TickClock {
    /// Starts a clock thread named `name`.
    pub fn start(name: String) -> std::io::Result<TickClock> {
        let (wakes, rx) = mpsc::channel();
        std::thread::Builder::new().name(name).spawn(move || {
            raise_priority("shard clock");
            run(rx);
        })?;
        Ok(TickClock { wakes })
    }

    /// Sends `shard` a [`Tick`] at `due` (at once when `due` has passed).
    pub fn wake_at(&self, due: Instant, shard: Recipient<Tick>) {
        // The thread only ends with the last handle, so this cannot fail while `self` lives.
        let _ = self.wakes.send(Wake { due, shard });
    }
}

fn run(rx: Receiver<Wake>) {
    // Earliest due first; `seq` keeps equal instants apart (and in registration order).
    let mut queue: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut shards: HashMap<u64, Recipient<Tick>> = HashMap::new();
    let mut seq = 0u64;
    loop {
        let received = match queue.peek() {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(Reverse((due, _))) => rx.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match received {
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
    }
}

/// Asks the kernel to run the calling thread at [`SHARD_THREAD_NICE`]; logs once per process
/// when it may not.
pub fn raise_priority(what: &str) {
    static REFUSED: std::sync::Once = std::sync::Once::new();
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread, no memory passed.
    let refused = unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, SHARD_THREAD_NICE) != 0
    };
    #[cfg(not(target_os = "linux"))]
    let refused = true;
    if refused {
        let error = std::io::Error::last_os_error();
        REFUSED.call_once(|| {
            tracing::info!(what, nice = SHARD_THREAD_NICE, %error, "shard threads run at normal priority (raising it is not permitted here)");
        });
    }
}

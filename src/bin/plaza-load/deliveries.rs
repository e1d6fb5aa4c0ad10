//! When each write of the `ws` mode was sent, so the sockets can turn every change frame
//! they read into a write → delivery latency. Shared by the writer and every socket thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// When each write was sent, shared by the writer and every socket thread (all `Instant`s of
/// one process, so they compare across threads).
pub struct Deliveries {
    epoch: Instant,
    /// Nanoseconds since `epoch`, plus 1, when row `k` was sent; 0 while unsent.
    sent_at: Vec<AtomicU64>,
    /// Change frames matched to a write, over all sockets (for the drain wait).
    pub received: AtomicU64,
}

impl Deliveries {
    pub fn new(writes: usize) -> Deliveries {
        Deliveries {
            epoch: Instant::now(),
            sent_at: (0..writes).map(|_| AtomicU64::new(0)).collect(),
            received: AtomicU64::new(0),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    pub fn mark_sent(&self, k: u64, at: Instant) {
        if let Some(slot) = usize::try_from(k).ok().and_then(|k| self.sent_at.get(k)) {
            slot.store(self.nanos(at) + 1, Ordering::Release);
        }
    }

    /// Microseconds from sending row `k` to `now`; `None` for a row this run did not send.
    pub fn latency_us(&self, k: u64, now: Instant) -> Option<u64> {
        let sent = self.sent_at.get(usize::try_from(k).ok()?)?.load(Ordering::Acquire).checked_sub(1)?;
        Some(self.nanos(now).saturating_sub(sent) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn matches_deliveries_to_writes() {
        let d = Deliveries::new(3);
        let sent = Instant::now();
        d.mark_sent(1, sent);
        assert!(d.latency_us(1, sent + Duration::from_millis(5)).is_some_and(|us| (5000..5100).contains(&us)));
        assert_eq!(d.latency_us(0, sent), None, "never sent");
        assert_eq!(d.latency_us(3, sent), None, "out of range");
    }
}

//! The gate that holds a subscription's live events back while its replay is in flight, so
//! they follow the replay in seq order.

use plaza_actors::changelog::Deliver;

/// Bounded like the outbound queue: a client that cannot take its replay is a slow consumer.
pub struct Gate {
    pending: Option<Vec<Deliver>>,
    limit: usize,
}

pub struct Overflow;

impl Gate {
    pub fn new(limit: usize) -> Gate {
        Gate { pending: Some(Vec::new()), limit }
    }

    /// `Some(event)` to send now; `None` when held back.
    pub fn admit(&mut self, event: Deliver) -> Result<Option<Deliver>, Overflow> {
        match &mut self.pending {
            None => Ok(Some(event)),
            Some(held) if held.len() >= self.limit => Err(Overflow),
            Some(held) => {
                held.push(event);
                Ok(None)
            }
        }
    }

    /// Opens the gate after the replay up to `seq`, returning what was held (newer only).
    pub fn open(&mut self, seq: i64) -> Vec<Deliver> {
        let held = self.pending.take().unwrap_or_default();
        held.into_iter().filter(|d| d.change.seq > seq).collect()
    }
}

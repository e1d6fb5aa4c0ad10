//! The Writer's fair queue: one queue per client (session, user, admin), served in turn, so a
//! client with many writes waiting delays anyone else by at most one of its units per group.
//! Bounded in ops, overall and per client: past its share, only that client is refused.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most units in one group.
    pub group_units: usize,
    /// Most ops in one group (a single larger unit still goes alone).
    pub group_ops: usize,
    /// Most ops waiting in all.
    pub queued_ops: usize,
    /// Most ops one client may have waiting.
    pub queued_ops_per_client: usize,
}

/// The queue is full for this client; the item is handed back.
pub struct Full<T>(pub T);

/// One client's waiting items with their op counts, and its total.
type ClientQueue<T> = (VecDeque<(usize, T)>, usize);

pub struct FairQueue<T> {
    limits: Limits,
    clients: HashMap<Arc<str>, ClientQueue<T>>,
    /// Clients with anything waiting, in turn order.
    turns: VecDeque<Arc<str>>,
    queued_ops: usize,
}

impl<T> FairQueue<T> {
    pub fn new(limits: Limits) -> Self {
        FairQueue { limits, clients: HashMap::new(), turns: VecDeque::new(), queued_ops: 0 }
    }

    /// Ops waiting in all.
    pub fn queued_ops(&self) -> usize {
        self.queued_ops
    }

    pub fn push(&mut self, client: Arc<str>, ops: usize, item: T) -> Result<(), Full<T>> {
        let mine = self.clients.get(&client).map_or(0, |(_, n)| *n);
        if self.queued_ops + ops > self.limits.queued_ops || mine + ops > self.limits.queued_ops_per_client {
            return Err(Full(item));
        }
        self.queued_ops += ops;
        let (queue, total) = self.clients.entry(client.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(client);
        }
        queue.push_back((ops, item));
        *total += ops;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.queued_ops == 0 && self.turns.is_empty()
    }

    /// The next group: one item from each client in turn, within the group's bounds.
    pub fn next_group(&mut self) -> Vec<T> {
        let (mut group, mut ops) = (Vec::new(), 0);
        while group.len() < self.limits.group_units {
            let Some(client) = self.turns.pop_front() else { break };
            let Some((queue, total)) = self.clients.get_mut(&client) else { continue };
            let Some(&(n, _)) = queue.front() else { continue };
            if !group.is_empty() && ops + n > self.limits.group_ops {
                // Too big for this group: it leads the next one.
                self.turns.push_front(client);
                break;
            }
            let Some((_, item)) = queue.pop_front() else { continue };
            ops += n;
            *total -= n;
            self.queued_ops -= n;
            if queue.is_empty() {
                self.clients.remove(&client);
            } else {
                self.turns.push_back(client);
            }
            group.push(item);
        }
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { group_units: 1024, group_ops: 1000, queued_ops: 10_000, queued_ops_per_client: 5_000 };

    #[test]
    fn a_flooding_client_delays_another_by_at_most_one_unit() {
        let mut q = FairQueue::new(LIMITS);
        for i in 0..40 {
            assert!(q.push("flood".into(), 100, format!("batch{i}")).is_ok());
        }
        assert!(q.push("single".into(), 1, "insert".to_string()).is_ok());
        let first = q.next_group();
        assert_eq!(first[..2], ["batch0".to_string(), "insert".to_string()], "the single insert rides in the first group");
        // Groups stay within the op bound: nine more batches of 100 after the insert.
        assert_eq!(first.len(), 10);
        let second = q.next_group();
        assert_eq!(second.len(), 10);
        assert!(second.iter().all(|b| b.starts_with("batch")));
    }

    #[test]
    fn only_the_client_past_its_share_is_refused() {
        let mut q = FairQueue::new(LIMITS);
        for _ in 0..50 {
            assert!(q.push("flood".into(), 100, ()).is_ok());
        }
        assert!(q.push("flood".into(), 100, ()).is_err(), "past its 5,000 ops");
        assert!(q.push("other".into(), 100, ()).is_ok(), "others still get in");
        for _ in 0..49 {
            let _ = q.push(format!("c{}", q.queued_ops).as_str().into(), 100, ());
        }
        assert!(q.push("late".into(), 1, ()).is_err(), "the whole queue is full");
    }

    #[test]
    fn a_unit_larger_than_a_group_goes_alone() {
        let mut q = FairQueue::new(LIMITS);
        assert!(q.push("admin".into(), 5000, "big").is_ok());
        assert!(q.push("u".into(), 1, "small").is_ok());
        assert_eq!(q.next_group(), vec!["big"]);
        assert_eq!(q.next_group(), vec!["small"]);
    }
}

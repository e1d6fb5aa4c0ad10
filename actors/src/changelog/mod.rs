//! The ChangeLog actor: the position of the persistent change log (last seq, oldest retained
//! seq) and its recent tail in memory, so most pulls and resumes never touch SQLite. Events
//! arrive from the Writer after their commit, in seq order, and writers are acknowledged once
//! they are here; they are then published to the `Fanout` actor, which delivers them to live
//! subscribers. Subscriptions register through this actor, so a resume's replay (from the tail
//! or the store) and its live events meet exactly at one seq.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde::Serialize;

pub mod fanout;

pub use fanout::{Deliver, Fanout, SlowConsumer, Subscription, Unsubscribe};
use fanout::{Publish, Register};

use crate::error::PlazaError;
use crate::model::change::Change;

/// How many recent events are kept in memory for pulls and resumes.
pub const DEFAULT_TAIL: usize = 10_000;

/// Where the persistent log stands: seqs in `oldest_seq..=last_seq` are retained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogBounds {
    pub oldest_seq: i64,
    pub last_seq: i64,
}

impl LogBounds {
    /// A client that has seen everything up to `since` can continue iff nothing after it was
    /// pruned and it does not claim a future the log never had.
    pub fn check(&self, since: i64) -> Result<(), PlazaError> {
        if since < self.oldest_seq - 1 || since > self.last_seq || since < 0 {
            Err(PlazaError::ResyncRequired { oldest_seq: self.oldest_seq, last_seq: self.last_seq })
        } else {
            Ok(())
        }
    }
}

pub struct ChangeLog {
    bounds: LogBounds,
    tail: VecDeque<Arc<Change>>,
    tail_cap: usize,
    fanout: Addr<Fanout>,
}

impl ChangeLog {
    pub fn new(bounds: LogBounds, tail_cap: usize, fanout: Addr<Fanout>) -> Self {
        ChangeLog { bounds, tail: VecDeque::with_capacity(tail_cap.min(1024)), tail_cap, fanout }
    }
}

impl Actor for ChangeLog {
    type Context = Context<Self>;
}

/// Committed events, in seq order, and the log bounds after the commit's pruning.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append {
    pub changes: Vec<Arc<Change>>,
    pub bounds: LogBounds,
}

impl Handler<Append> for ChangeLog {
    type Result = ();
    fn handle(&mut self, msg: Append, _: &mut Context<Self>) {
        let committed_at = Instant::now();
        self.bounds = msg.bounds;
        let mut appended = Vec::with_capacity(msg.changes.len());
        for change in msg.changes {
            if self.tail.len() == self.tail_cap {
                self.tail.pop_front();
            }
            appended.push(change.clone());
            self.tail.push_back(change);
        }
        if !appended.is_empty() {
            // In seq order, and before any later registration: see `Subscribe`.
            self.fanout.do_send(Publish { changes: appended, committed_at });
        }
        while self.tail.front().is_some_and(|c| c.seq < self.bounds.oldest_seq) {
            self.tail.pop_front();
        }
    }
}

#[derive(Message)]
#[rtype(result = "LogBounds")]
pub struct Bounds;

impl Handler<Bounds> for ChangeLog {
    type Result = MessageResult<Bounds>;
    fn handle(&mut self, _: Bounds, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.bounds)
    }
}

/// Changes after `since`, at most `limit`.
#[derive(Message)]
#[rtype(result = "Result<Pulled, PlazaError>")]
pub struct Pull {
    pub since: i64,
    pub limit: usize,
}

pub enum Pulled {
    /// Served from the in-memory tail.
    Changes { changes: Vec<Arc<Change>>, has_more: bool },
    /// Older than the tail: read it from the store (still within retention).
    FromStore,
}

impl Handler<Pull> for ChangeLog {
    type Result = Result<Pulled, PlazaError>;
    fn handle(&mut self, msg: Pull, _: &mut Context<Self>) -> Self::Result {
        let bounds = self.bounds;
        bounds.check(msg.since)?;
        let tail_start = self.tail.front().map_or(bounds.last_seq + 1, |c| c.seq);
        if msg.since + 1 < tail_start && msg.since < bounds.last_seq {
            return Ok(Pulled::FromStore);
        }
        // Seqs in the tail are contiguous except where a commit failed; find the start by search.
        let start = self.tail.partition_point(|c| c.seq <= msg.since);
        let changes: Vec<_> = self.tail.iter().skip(start).take(msg.limit).cloned().collect();
        let has_more = self.tail.len() - start > changes.len();
        Ok(Pulled::Changes { changes, has_more })
    }
}

/// Registers a live subscription. Events committed after the reply's `seq` are delivered
/// live; `replay` says how to get the ones after `since` up to `seq`, so together there is no
/// gap and no duplicate.
#[derive(Message)]
#[rtype(result = "Result<Subscribed, PlazaError>")]
pub struct Subscribe {
    pub subscriber: u64,
    pub id: Arc<str>,
    pub sub: Subscription,
    pub since: Option<i64>,
    pub deliver: Recipient<Deliver>,
    pub kick: Recipient<SlowConsumer>,
}

pub struct Subscribed {
    pub seq: i64,
    pub replay: Replay,
}

pub enum Replay {
    Nothing,
    /// From the in-memory tail (unfiltered: apply `Subscription::wants`).
    Events(Vec<Arc<Change>>),
    /// Read seqs `since+1..=until` from the store (still within retention).
    FromStore { since: i64, until: i64 },
}

impl Handler<Subscribe> for ChangeLog {
    type Result = Result<Subscribed, PlazaError>;
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        let last = self.bounds.last_seq;
        let replay = match msg.since {
            None => Replay::Nothing,
            Some(since) => {
                self.bounds.check(since)?;
                let tail_start = self.tail.front().map_or(last + 1, |c| c.seq);
                if since >= last {
                    Replay::Nothing
                } else if since + 1 >= tail_start {
                    let start = self.tail.partition_point(|c| c.seq <= since);
                    Replay::Events(self.tail.iter().skip(start).cloned().collect())
                } else {
                    Replay::FromStore { since, until: last }
                }
            }
        };
        // Every event up to `last` was published to the fan-out before this registration, so
        // the subscriber gets exactly the later ones live.
        self.fanout.do_send(Register {
            subscriber: msg.subscriber,
            id: msg.id,
            sub: msg.sub,
            after: last,
            deliver: msg.deliver,
            kick: msg.kick,
        });
        Ok(Subscribed { seq: last, replay })
    }
}


impl Handler<Unsubscribe> for ChangeLog {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        self.fanout.do_send(msg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::change::ChangeKind;

    fn change(seq: i64) -> Change {
        Change { seq, entity: "T".into(), row_id: seq.to_string(), kind: ChangeKind::Insert, data: None, timestamp: String::new(), prior: None }
    }

    #[actix::test]
    async fn serves_the_tail_and_refuses_pruned_or_future_cursors() {
        let fanout = Fanout::new(Arc::default()).start();
        let log = ChangeLog::new(LogBounds { oldest_seq: 1, last_seq: 0 }, 3, fanout).start();
        log.send(Append { changes: (1..=5).map(change).map(Arc::new).collect(), bounds: LogBounds { oldest_seq: 1, last_seq: 5 } })
            .await
            .unwrap();
        match log.send(Pull { since: 3, limit: 10 }).await.unwrap().unwrap() {
            Pulled::Changes { changes, has_more } => {
                assert_eq!(changes.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![4, 5]);
                assert!(!has_more);
            }
            Pulled::FromStore => panic!("seq 4 is in the tail"),
        }
        assert!(matches!(log.send(Pull { since: 0, limit: 10 }).await.unwrap(), Ok(Pulled::FromStore)));
        assert!(matches!(log.send(Pull { since: 6, limit: 10 }).await.unwrap(), Err(PlazaError::ResyncRequired { .. })));
        log.send(Append { changes: vec![Arc::new(change(6))], bounds: LogBounds { oldest_seq: 4, last_seq: 6 } }).await.unwrap();
        assert!(matches!(log.send(Pull { since: 2, limit: 10 }).await.unwrap(), Err(PlazaError::ResyncRequired { oldest_seq: 4, .. })));
        match log.send(Pull { since: 3, limit: 1 }).await.unwrap().unwrap() {
            Pulled::Changes { changes, has_more } => {
                assert_eq!(changes[0].seq, 4);
                assert!(has_more);
            }
            Pulled::FromStore => panic!("seq 4 is in the tail"),
        }
    }
}

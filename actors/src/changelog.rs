//! The ChangeLog actor: the position of the persistent change log (last seq, oldest retained
//! seq) and its recent tail in memory, so most pulls never touch SQLite. Events arrive from the
//! Writer after their commit, in seq order; this is the one place later fan-out hangs from.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::PlazaError;
use crate::rows::Row;

/// How many recent events are kept in memory for pulls and resumes.
pub const DEFAULT_TAIL: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        match s {
            "insert" => Some(ChangeKind::Insert),
            "update" => Some(ChangeKind::Update),
            "delete" => Some(ChangeKind::Delete),
            _ => None,
        }
    }
}

/// One committed change, exactly as clients see it in pulls and live frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub seq: i64,
    pub entity: String,
    pub row_id: String,
    pub kind: ChangeKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Row>,
    pub timestamp: String,
    /// The row as it was before a delete: never sent, but read policies are checked on it.
    #[serde(skip)]
    pub prior: Option<Row>,
}

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
}

impl ChangeLog {
    pub fn new(bounds: LogBounds, tail_cap: usize) -> Self {
        ChangeLog { bounds, tail: VecDeque::with_capacity(tail_cap.min(1024)), tail_cap }
    }
}

impl Actor for ChangeLog {
    type Context = Context<Self>;
}

/// Committed events, in seq order, and the log bounds after the commit's pruning.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append {
    pub changes: Vec<Change>,
    pub bounds: LogBounds,
}

impl Handler<Append> for ChangeLog {
    type Result = ();
    fn handle(&mut self, msg: Append, _: &mut Context<Self>) {
        self.bounds = msg.bounds;
        for change in msg.changes {
            if self.tail.len() == self.tail_cap {
                self.tail.pop_front();
            }
            self.tail.push_back(Arc::new(change));
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
    Changes { changes: Vec<Arc<Change>>, has_more: bool, bounds: LogBounds },
    /// Older than the tail: read it from the store (still within retention).
    FromStore { bounds: LogBounds },
}

impl Handler<Pull> for ChangeLog {
    type Result = Result<Pulled, PlazaError>;
    fn handle(&mut self, msg: Pull, _: &mut Context<Self>) -> Self::Result {
        let bounds = self.bounds;
        bounds.check(msg.since)?;
        let tail_start = self.tail.front().map_or(bounds.last_seq + 1, |c| c.seq);
        if msg.since + 1 < tail_start && msg.since < bounds.last_seq {
            return Ok(Pulled::FromStore { bounds });
        }
        // Seqs in the tail are contiguous except where a commit failed; find the start by search.
        let start = self.tail.partition_point(|c| c.seq <= msg.since);
        let changes: Vec<_> = self.tail.iter().skip(start).take(msg.limit).cloned().collect();
        let has_more = self.tail.len() - start > changes.len();
        Ok(Pulled::Changes { changes, has_more, bounds })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(seq: i64) -> Change {
        Change { seq, entity: "T".into(), row_id: seq.to_string(), kind: ChangeKind::Insert, data: None, timestamp: String::new(), prior: None }
    }

    #[actix::test]
    async fn serves_the_tail_and_refuses_pruned_or_future_cursors() {
        let log = ChangeLog::new(LogBounds { oldest_seq: 1, last_seq: 0 }, 3).start();
        log.send(Append { changes: (1..=5).map(change).collect(), bounds: LogBounds { oldest_seq: 1, last_seq: 5 } })
            .await
            .unwrap();
        match log.send(Pull { since: 3, limit: 10 }).await.unwrap().unwrap() {
            Pulled::Changes { changes, has_more, .. } => {
                assert_eq!(changes.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![4, 5]);
                assert!(!has_more);
            }
            Pulled::FromStore { .. } => panic!("seq 4 is in the tail"),
        }
        assert!(matches!(log.send(Pull { since: 0, limit: 10 }).await.unwrap(), Ok(Pulled::FromStore { .. })));
        assert!(matches!(log.send(Pull { since: 6, limit: 10 }).await.unwrap(), Err(PlazaError::ResyncRequired { .. })));
        log.send(Append { changes: vec![change(6)], bounds: LogBounds { oldest_seq: 4, last_seq: 6 } }).await.unwrap();
        assert!(matches!(log.send(Pull { since: 2, limit: 10 }).await.unwrap(), Err(PlazaError::ResyncRequired { oldest_seq: 4, .. })));
        match log.send(Pull { since: 3, limit: 1 }).await.unwrap().unwrap() {
            Pulled::Changes { changes, has_more, .. } => {
                assert_eq!(changes[0].seq, 4);
                assert!(has_more);
            }
            Pulled::FromStore { .. } => panic!("seq 4 is in the tail"),
        }
    }
}

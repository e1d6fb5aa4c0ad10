//! The ChangeLog actor: the position of the persistent change log (last seq, oldest retained
//! seq), its recent tail in memory (so most pulls and resumes never touch SQLite), and the live
//! subscriptions. Events arrive from the Writer after their commit, in seq order, and fan out
//! from here: each subscription is checked (entity, filter, read policy for its caller) and
//! matching events are offered to the subscriber's bounded mailbox with `try_send`, so a slow
//! subscriber is cut off instead of slowing anyone down.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::PlazaError;
use crate::policy::{AuthContext, Policies};
use crate::query::Filter;
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

/// What one live subscriber wants to see.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub entity: String,
    pub filter: Filter,
    pub auth: AuthContext,
}

impl Subscription {
    /// Entity, filter (on the row after the change, or before a delete) and read policy: the
    /// one test for live events, replays and SSE alike.
    pub fn wants(&self, policies: &Policies, change: &Change) -> bool {
        if change.entity != self.entity {
            return false;
        }
        let row = change.data.as_ref().or(change.prior.as_ref());
        row.is_some_and(|r| self.filter.matches(r)) && policies.can_see(&self.auth, change)
    }
}

/// One event for one subscription. `json` is the event serialised once for all subscribers.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    pub sub: Arc<str>,
    pub change: Arc<Change>,
    pub json: Arc<str>,
    pub committed_at: Instant,
}

/// Sent once to a subscriber whose mailbox was full: it has been dropped from the fan-out.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SlowConsumer;

struct Subscriber {
    sub: Subscription,
    /// Live delivery starts after this seq (the log position when it subscribed).
    after: i64,
    deliver: Recipient<Deliver>,
    kick: Recipient<SlowConsumer>,
}

/// Subscriptions are keyed by (subscriber id, subscription id).
type SubKey = (u64, Arc<str>);

pub struct ChangeLog {
    bounds: LogBounds,
    tail: VecDeque<Arc<Change>>,
    tail_cap: usize,
    policies: Arc<Policies>,
    by_entity: HashMap<String, HashMap<SubKey, Subscriber>>,
    by_subscriber: HashMap<u64, Vec<(String, Arc<str>)>>,
}

impl ChangeLog {
    pub fn new(bounds: LogBounds, tail_cap: usize, policies: Arc<Policies>) -> Self {
        ChangeLog {
            bounds,
            tail: VecDeque::with_capacity(tail_cap.min(1024)),
            tail_cap,
            policies,
            by_entity: HashMap::new(),
            by_subscriber: HashMap::new(),
        }
    }

    fn remove_subscriber(&mut self, id: u64) {
        for (entity, sub) in self.by_subscriber.remove(&id).unwrap_or_default() {
            if let Some(subs) = self.by_entity.get_mut(&entity) {
                subs.remove(&(id, sub));
            }
        }
    }

    fn fan_out(&mut self, change: &Arc<Change>, committed_at: Instant) {
        let Some(subs) = self.by_entity.get(&change.entity) else { return };
        let mut json: Option<Arc<str>> = None;
        let mut dropped = Vec::new();
        for ((subscriber, sub_id), s) in subs {
            if change.seq <= s.after || !s.sub.wants(&self.policies, change) {
                continue;
            }
            let json = json.get_or_insert_with(|| serde_json::to_string(&**change).unwrap_or_default().into()).clone();
            let msg = Deliver { sub: sub_id.clone(), change: change.clone(), json, committed_at };
            match s.deliver.try_send(msg) {
                Ok(()) => {}
                Err(SendError::Full(_)) => {
                    // One message past the bound, and only once: the subscriber is dropped now.
                    s.kick.do_send(SlowConsumer);
                    dropped.push(*subscriber);
                }
                Err(SendError::Closed(_)) => dropped.push(*subscriber),
            }
        }
        for id in dropped {
            self.remove_subscriber(id);
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.by_entity.values().map(HashMap::len).sum()
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

/// Fans committed events out to subscribers; queued by `Append` right after it answers, so
/// writers are acknowledged without waiting for delivery.
#[derive(Message)]
#[rtype(result = "()")]
struct FanOut {
    changes: Vec<Arc<Change>>,
    committed_at: Instant,
}

impl Handler<FanOut> for ChangeLog {
    type Result = ();
    fn handle(&mut self, msg: FanOut, _: &mut Context<Self>) {
        for change in &msg.changes {
            self.fan_out(change, msg.committed_at);
        }
    }
}

impl Handler<Append> for ChangeLog {
    type Result = ();
    fn handle(&mut self, msg: Append, ctx: &mut Context<Self>) {
        let committed_at = Instant::now();
        self.bounds = msg.bounds;
        let mut appended = Vec::with_capacity(msg.changes.len());
        for change in msg.changes {
            if self.tail.len() == self.tail_cap {
                self.tail.pop_front();
            }
            let change = Arc::new(change);
            appended.push(change.clone());
            self.tail.push_back(change);
        }
        if !appended.is_empty() && !self.by_entity.is_empty() {
            ctx.notify(FanOut { changes: appended, committed_at });
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
        let key = (msg.subscriber, msg.id.clone());
        let entity = msg.sub.entity.clone();
        let subs = self.by_entity.entry(entity.clone()).or_default();
        if subs.insert(key, Subscriber { sub: msg.sub, after: last, deliver: msg.deliver, kick: msg.kick }).is_none() {
            self.by_subscriber.entry(msg.subscriber).or_default().push((entity, msg.id));
        }
        Ok(Subscribed { seq: last, replay })
    }
}

/// Ends one subscription (`id`), or all of a subscriber's (`None`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub subscriber: u64,
    pub id: Option<Arc<str>>,
}

impl Handler<Unsubscribe> for ChangeLog {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        match msg.id {
            None => self.remove_subscriber(msg.subscriber),
            Some(id) => {
                if let Some(list) = self.by_subscriber.get_mut(&msg.subscriber) {
                    list.retain(|(entity, sub)| {
                        let keep = *sub != id;
                        if !keep {
                            if let Some(subs) = self.by_entity.get_mut(entity) {
                                subs.remove(&(msg.subscriber, id.clone()));
                            }
                        }
                        keep
                    });
                }
            }
        }
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
        let log = ChangeLog::new(LogBounds { oldest_seq: 1, last_seq: 0 }, 3, Arc::default()).start();
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

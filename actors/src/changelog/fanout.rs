//! The Fanout actor: live subscriptions and delivery. Each committed event published by the
//! ChangeLog is checked per subscription (entity, filter, read policy for its caller) and offered
//! to the subscriber's bounded mailbox with `try_send`: a full mailbox means a slow subscriber,
//! which is dropped and told so, while everyone else carries on. Nothing here ever waits on a
//! socket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::model::change::Change;
use crate::model::policy::{AuthContext, Policies};
use crate::model::query::Filter;

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

pub struct Fanout {
    policies: Arc<Policies>,
    by_entity: HashMap<String, HashMap<SubKey, Subscriber>>,
    by_subscriber: HashMap<u64, Vec<(String, Arc<str>)>>,
}

impl Fanout {
    pub fn new(policies: Arc<Policies>) -> Self {
        Fanout { policies, by_entity: HashMap::new(), by_subscriber: HashMap::new() }
    }

    fn remove_subscriber(&mut self, id: u64) {
        for (entity, sub) in self.by_subscriber.remove(&id).unwrap_or_default() {
            if let Some(subs) = self.by_entity.get_mut(&entity) {
                subs.remove(&(id, sub));
            }
        }
    }

    fn deliver(&mut self, change: &Arc<Change>, committed_at: Instant) {
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
}

impl Actor for Fanout {
    type Context = Context<Self>;
}

/// Committed events, in seq order, with when the ChangeLog received them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Publish {
    pub changes: Vec<Arc<Change>>,
    pub committed_at: Instant,
}

impl Handler<Publish> for Fanout {
    type Result = ();
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        for change in &msg.changes {
            self.deliver(change, msg.committed_at);
        }
    }
}

/// Adds a subscription (sent by the ChangeLog while it handles `Subscribe`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub subscriber: u64,
    pub id: Arc<str>,
    pub sub: Subscription,
    pub after: i64,
    pub deliver: Recipient<Deliver>,
    pub kick: Recipient<SlowConsumer>,
}

impl Handler<Register> for Fanout {
    type Result = ();
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) {
        let entity = msg.sub.entity.clone();
        let subscriber = Subscriber { sub: msg.sub, after: msg.after, deliver: msg.deliver, kick: msg.kick };
        let subs = self.by_entity.entry(entity.clone()).or_default();
        if subs.insert((msg.subscriber, msg.id.clone()), subscriber).is_none() {
            self.by_subscriber.entry(msg.subscriber).or_default().push((entity, msg.id));
        }
    }
}

/// Ends one subscription (`id`), or all of a subscriber's (`None`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub subscriber: u64,
    pub id: Option<Arc<str>>,
}

impl Handler<Unsubscribe> for Fanout {
    type Result = ();
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) {
        let Some(id) = msg.id else { return self.remove_subscriber(msg.subscriber) };
        let Some(list) = self.by_subscriber.get_mut(&msg.subscriber) else { return };
        list.retain(|(entity, sub)| *sub != id || {
            if let Some(subs) = self.by_entity.get_mut(entity) {
                subs.remove(&(msg.subscriber, id.clone()));
            }
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::change::ChangeKind;
    use crate::model::policy::AuthContext;
    use crate::model::query::Filter;

    /// Collects what it is sent and answers with it when asked.
    #[derive(Default)]
    struct Probe {
        seqs: Vec<i64>,
        kicked: bool,
    }

    impl Actor for Probe {
        type Context = Context<Self>;
    }

    impl Handler<Deliver> for Probe {
        type Result = ();
        fn handle(&mut self, msg: Deliver, _: &mut Context<Self>) {
            self.seqs.push(msg.change.seq);
        }
    }

    impl Handler<SlowConsumer> for Probe {
        type Result = ();
        fn handle(&mut self, _: SlowConsumer, _: &mut Context<Self>) {
            self.kicked = true;
        }
    }

    #[derive(Message)]
    #[rtype(result = "(Vec<i64>, bool)")]
    struct Seen;

    impl Handler<Seen> for Probe {
        type Result = MessageResult<Seen>;
        fn handle(&mut self, _: Seen, _: &mut Context<Self>) -> Self::Result {
            MessageResult((self.seqs.clone(), self.kicked))
        }
    }

    fn change(seq: i64, entity: &str) -> Arc<Change> {
        let data = serde_json::json!({"id": seq.to_string()}).as_object().cloned();
        Arc::new(Change { seq, entity: entity.into(), row_id: seq.to_string(), kind: ChangeKind::Insert, data, timestamp: String::new(), prior: None })
    }

    fn register(fanout: &Addr<Fanout>, probe: &Addr<Probe>, subscriber: u64, after: i64) {
        fanout.do_send(Register {
            subscriber,
            id: "s".into(),
            sub: Subscription { entity: "T".into(), filter: Filter::everything(), auth: AuthContext::admin() },
            after,
            deliver: probe.clone().recipient(),
            kick: probe.clone().recipient(),
        });
    }

    #[actix::test]
    async fn delivers_only_later_events_of_the_entity_until_unsubscribed() {
        let fanout = Fanout::new(Arc::default()).start();
        let probe = Probe::default().start();
        register(&fanout, &probe, 1, 2);
        let publish = |changes| fanout.send(Publish { changes, committed_at: Instant::now() });
        publish(vec![change(2, "T"), change(3, "T"), change(4, "Other"), change(5, "T")]).await.unwrap();
        fanout.send(Unsubscribe { subscriber: 1, id: Some("s".into()) }).await.unwrap();
        publish(vec![change(6, "T")]).await.unwrap();
        assert_eq!(probe.send(Seen).await.unwrap(), (vec![3, 5], false));
    }
}

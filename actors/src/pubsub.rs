//! The PubSub actor: topic → subscribed streams. It owns the subscriber sets and checks the
//! manifest's topic rules (`model::topics`) on every subscribe and publish. A publish is
//! serialised once and offered to each subscriber's bounded mailbox with `try_send`: a full
//! mailbox is a slow consumer, dropped from every topic and told so (it then closes), and
//! nobody else waits for it. A stream that closes sends `Leave`.
//!
//! Messages: `Subscribe`, `Unsubscribe`, `Leave`, `Publish`, `Stats`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use actix::prelude::*;
use serde_json::{json, Value};

use crate::changelog::SlowConsumer;
use crate::error::{PlazaError, Result};
use crate::model::policy::AuthContext;
use crate::model::topics::{check_topic, TopicAction, TopicRules};

/// Topics one stream may be subscribed to at once.
pub const MAX_TOPICS_PER_STREAM: usize = 100;
/// Largest message (serialised JSON) a publish may carry.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// One published message for one subscriber: the whole `{"type":"pubsub",...}` frame, built
/// once per publish.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Deliver {
    pub topic: Arc<str>,
    pub frame: Arc<str>,
}

struct Subscriber {
    deliver: Recipient<Deliver>,
    kick: Recipient<SlowConsumer>,
}

pub struct PubSub {
    rules: Arc<TopicRules>,
    topics: HashMap<Arc<str>, HashMap<u64, Subscriber>>,
    by_stream: HashMap<u64, HashSet<Arc<str>>>,
    delivered: u64,
    dropped: u64,
}

impl PubSub {
    pub fn new(rules: Arc<TopicRules>) -> PubSub {
        PubSub { rules, topics: HashMap::new(), by_stream: HashMap::new(), delivered: 0, dropped: 0 }
    }

    fn leave(&mut self, stream: u64) {
        for topic in self.by_stream.remove(&stream).unwrap_or_default() {
            if let Some(subs) = self.topics.get_mut(&topic) {
                subs.remove(&stream);
                if subs.is_empty() {
                    self.topics.remove(&topic);
                }
            }
        }
    }
}

impl Actor for PubSub {
    type Context = Context<Self>;
}

/// Subscribes stream `stream` (its registry id) to `topic`, if the topic rules let `auth`.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct Subscribe {
    pub stream: u64,
    pub auth: AuthContext,
    pub topic: String,
    pub deliver: Recipient<Deliver>,
    pub kick: Recipient<SlowConsumer>,
}

/// Answers whether the stream was subscribed.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Unsubscribe {
    pub stream: u64,
    pub topic: String,
}

/// The stream closed: it leaves every topic.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub stream: u64,
}

/// Publishes `message` to `topic` if the rules let `auth`; answers how many subscribers it was
/// handed to.
#[derive(Message)]
#[rtype(result = "Result<usize>")]
pub struct Publish {
    pub auth: AuthContext,
    pub topic: String,
    pub message: Value,
}

#[derive(Debug, Clone, Copy, serde::Serialize, MessageResponse)]
pub struct PubSubStats {
    pub topics: usize,
    pub subscriptions: usize,
    pub delivered: u64,
    pub slow_consumers_dropped: u64,
}

#[derive(Message)]
#[rtype(result = "PubSubStats")]
pub struct Stats;

impl Handler<Subscribe> for PubSub {
    type Result = Result<()>;
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Result<()> {
        check_topic(&msg.topic)?;
        if !self.rules.allows(&msg.auth, TopicAction::Subscribe, &msg.topic) {
            return Err(PlazaError::Forbidden(format!("the topic rules do not let this caller subscribe to '{}'", msg.topic)));
        }
        let mine = self.by_stream.entry(msg.stream).or_default();
        if mine.len() >= MAX_TOPICS_PER_STREAM && !mine.contains(msg.topic.as_str()) {
            return Err(PlazaError::Validation(format!("at most {MAX_TOPICS_PER_STREAM} topics per socket")));
        }
        let topic: Arc<str> = msg.topic.into();
        mine.insert(topic.clone());
        self.topics.entry(topic).or_default().insert(msg.stream, Subscriber { deliver: msg.deliver, kick: msg.kick });
        Ok(())
    }
}

impl Handler<Unsubscribe> for PubSub {
    type Result = bool;
    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> bool {
        let was = self.by_stream.get_mut(&msg.stream).is_some_and(|mine| mine.remove(msg.topic.as_str()));
        if let Some(subs) = self.topics.get_mut(msg.topic.as_str()) {
            subs.remove(&msg.stream);
            if subs.is_empty() {
                self.topics.remove(msg.topic.as_str());
            }
        }
        was
    }
}

impl Handler<Leave> for PubSub {
    type Result = ();
    fn handle(&mut self, msg: Leave, _: &mut Context<Self>) {
        self.leave(msg.stream);
    }
}

impl Handler<Publish> for PubSub {
    type Result = Result<usize>;
    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) -> Result<usize> {
        check_topic(&msg.topic)?;
        if !self.rules.allows(&msg.auth, TopicAction::Publish, &msg.topic) {
            return Err(PlazaError::Forbidden(format!("the topic rules do not let this caller publish to '{}'", msg.topic)));
        }
        let Some(subs) = self.topics.get(msg.topic.as_str()) else { return Ok(0) };
        let frame = json!({"type": "pubsub", "topic": &msg.topic, "message": msg.message}).to_string();
        if frame.len() > MAX_MESSAGE_BYTES + MAX_TOPIC_OVERHEAD {
            return Err(PlazaError::Validation(format!("pub/sub messages are limited to {MAX_MESSAGE_BYTES} bytes of JSON")));
        }
        let (topic, frame): (Arc<str>, Arc<str>) = (msg.topic.into(), frame.into());
        let mut delivered = 0;
        let mut gone = Vec::new();
        for (stream, s) in subs {
            match s.deliver.try_send(Deliver { topic: topic.clone(), frame: frame.clone() }) {
                Ok(()) => delivered += 1,
                Err(SendError::Full(_)) => {
                    s.kick.do_send(SlowConsumer);
                    gone.push(*stream);
                }
                Err(SendError::Closed(_)) => gone.push(*stream),
            }
        }
        self.dropped += gone.len() as u64;
        for stream in gone {
            self.leave(stream);
        }
        self.delivered += delivered as u64;
        Ok(delivered)
    }
}

/// Room in a frame for the type and topic around the message.
const MAX_TOPIC_OVERHEAD: usize = crate::model::topics::MAX_TOPIC_LEN + 64;

impl Handler<Stats> for PubSub {
    type Result = PubSubStats;
    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> PubSubStats {
        PubSubStats {
            topics: self.topics.len(),
            subscriptions: self.topics.values().map(HashMap::len).sum(),
            delivered: self.delivered,
            slow_consumers_dropped: self.dropped,
        }
    }
}

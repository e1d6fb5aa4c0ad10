//! What WebSocket connections and SSE streams share: a slot per open stream (the per-IP limit
//! and the open-streams gauge), building a subscription from client input, the replay of missed
//! events, and the gate that holds live events back until that replay has been sent.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::web;
use plaza_actors::model::change::Change;
use plaza_actors::changelog::{Deliver, Replay, Subscription};
use plaza_actors::model::policy::AuthContext;
use plaza_actors::model::query::{Filter, Query};
use plaza_actors::PlazaError;
use serde_json::Value;

use crate::error::ApiError;
use crate::AppState;

/// Longest subscription id a client may choose.
pub const MAX_SUB_ID_LEN: usize = 128;

/// Held for the life of one stream; counts it against its IP and in `/metrics`.
pub struct StreamSlot {
    state: web::Data<AppState>,
    ip: Option<IpAddr>,
}

impl StreamSlot {
    pub fn acquire(state: &web::Data<AppState>, ip: Option<IpAddr>) -> Result<StreamSlot, ApiError> {
        if let Some(ip) = ip {
            let mut open = state.streams_per_ip.entry(ip).or_insert(0);
            if *open >= state.config.ws_max_per_ip {
                return Err(ApiError::TooManyStreams(state.config.ws_max_per_ip));
            }
            *open += 1;
        }
        state.metrics.streams_open.inc();
        Ok(StreamSlot { state: state.clone(), ip })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.state.metrics.streams_open.dec();
        if let Some(ip) = self.ip {
            self.state.streams_per_ip.remove_if_mut(&ip, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

/// A subscription from client input: the entity must exist and the filter must parse.
pub fn subscription(state: &AppState, entity: &str, filter: Option<&Value>, auth: &AuthContext) -> Result<Subscription, PlazaError> {
    let def = state.plaza.reader.entity(entity)?;
    let filter = match filter {
        Some(f) if !f.is_null() => Query::parse(def, f)?.filter,
        _ => Filter::everything(),
    };
    Ok(Subscription { entity: def.name.clone(), filter, auth: auth.clone() })
}

pub fn sub_id(v: Option<&Value>) -> Result<Arc<str>, PlazaError> {
    match v {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_SUB_ID_LEN => Ok(s.as_str().into()),
        Some(Value::Number(n)) => Ok(n.to_string().into()),
        _ => Err(PlazaError::Validation(format!("\"id\" must be a string of 1 to {MAX_SUB_ID_LEN} characters"))),
    }
}

/// The missed events a subscription should see, in seq order, read from memory or the store.
pub async fn replay(state: &web::Data<AppState>, sub: &Subscription, replay: Replay) -> Result<Vec<Arc<Change>>, ApiError> {
    let max = state.config.ws_replay_max;
    // Further behind than a replay serves: the client pulls first, as after a pruned cursor.
    let too_far = |until: i64| PlazaError::ResyncRequired { oldest_seq: until - max as i64 + 1, last_seq: until };
    let events = match replay {
        Replay::Nothing => return Ok(Vec::new()),
        Replay::Events(events) => events,
        Replay::FromStore { since, until } => {
            if (until - since) as usize > max {
                return Err(too_far(until).into());
            }
            let (changes, _) = state.read(move |r| r.changes_since(since, (until - since) as usize)).await??;
            changes.into_iter().map(Arc::new).collect()
        }
    };
    if events.len() > max {
        return Err(too_far(events.last().map_or(0, |c| c.seq)).into());
    }
    let policies = &state.plaza.policies;
    Ok(events.into_iter().filter(|c| sub.wants(policies, c)).collect())
}

/// The change frame, identical on WebSocket and SSE.
pub fn change_frame(sub: &str, event_json: &str) -> String {
    let sub = serde_json::to_string(sub).unwrap_or_else(|_| "\"\"".into());
    format!("{{\"type\":\"change\",\"sub\":{sub},\"event\":{event_json}}}")
}

/// Live events wait here while a subscription's replay is in flight, so they follow it in seq
/// order; the buffer is bounded like the outbound queue.
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

//! The Cache actor: an in-memory key → JSON value store with TTLs, bounded by entries and by
//! bytes (keys + serialised values); past either bound the least recently used entries are
//! evicted. It owns every entry; nothing else holds them. Time comes from the injected clock,
//! so expiry is checked on every access (an expired entry is never served) and swept
//! periodically so memory is given back.
//!
//! Messages: `Get`, `Set`, `Del`, `Incr`, `Expire`, `Stats`, `Keys` (Studio's key list).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;

use crate::clock::SharedClock;
use crate::error::{PlazaError, Result};

/// Longest key accepted.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest single value (serialised JSON).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Longest TTL accepted: ten years, in seconds.
pub const MAX_TTL_SECS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;
/// Bookkeeping charged per entry on top of key and value, so millions of tiny entries still
/// count against the byte bound.
const ENTRY_OVERHEAD: usize = 64;
/// How often expired entries are swept out.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_entries: usize,
    pub max_bytes: usize,
}

struct Entry {
    value: Value,
    bytes: usize,
    expires_at: Option<i64>,
    used: u64,
}

pub struct Cache {
    entries: HashMap<String, Entry>,
    /// Last use → key, oldest first: the eviction order.
    lru: BTreeMap<u64, String>,
    expiries: BTreeSet<(i64, String)>,
    bytes: usize,
    tick: u64,
    limits: Limits,
    clock: SharedClock,
    evicted: u64,
}

impl Cache {
    pub fn new(limits: Limits, clock: SharedClock) -> Cache {
        Cache {
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            expiries: BTreeSet::new(),
            bytes: 0,
            tick: 0,
            limits,
            clock,
            evicted: 0,
        }
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.lru.remove(&entry.used);
        if let Some(at) = entry.expires_at {
            self.expiries.remove(&(at, key.to_string()));
        }
        self.bytes -= entry.bytes;
        Some(entry)
    }

    /// The live entry under `key`, marked as just used; an expired one is dropped.
    fn live(&mut self, key: &str) -> Option<&mut Entry> {
        let now = self.clock.now_ms();
        if self.entries.get(key)?.expires_at.is_some_and(|at| at <= now) {
            self.remove(key);
            return None;
        }
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(key)?;
        self.lru.remove(&entry.used);
        entry.used = tick;
        self.lru.insert(tick, key.to_string());
        Some(entry)
    }

    fn insert(&mut self, key: String, value: Value, expires_at: Option<i64>) -> Result<()> {
        let bytes = entry_bytes(&key, &value)?;
        if bytes > self.limits.max_bytes {
            return Err(PlazaError::Validation(format!("the entry is larger than the cache ({} bytes)", self.limits.max_bytes)));
        }
        self.remove(&key);
        self.tick += 1;
        if let Some(at) = expires_at {
            self.expiries.insert((at, key.clone()));
        }
        self.lru.insert(self.tick, key.clone());
        self.bytes += bytes;
        self.entries.insert(key, Entry { value, bytes, expires_at, used: self.tick });
        self.evict();
        Ok(())
    }

    fn evict(&mut self) {
        while self.entries.len() > self.limits.max_entries || self.bytes > self.limits.max_bytes {
            let Some(key) = self.lru.first_key_value().map(|(_, k)| k.clone()) else { break };
            self.remove(&key);
            self.evicted += 1;
        }
    }

    fn sweep(&mut self) {
        let now = self.clock.now_ms();
        while let Some((at, key)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.remove(&key);
        }
    }
}

fn entry_bytes(key: &str, value: &Value) -> Result<usize> {
    let len = serde_json::to_string(value).map_err(|e| PlazaError::Internal(e.to_string()))?.len();
    if len > MAX_VALUE_BYTES {
        return Err(PlazaError::Validation(format!("cache values are limited to {MAX_VALUE_BYTES} bytes of JSON")));
    }
    Ok(key.len() + len + ENTRY_OVERHEAD)
}

/// A key from a client: 1 to `MAX_KEY_BYTES` bytes.
pub fn check_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(PlazaError::Validation(format!("\"key\" must be a string of 1 to {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

/// A TTL in seconds (fractions allowed) from a client, as milliseconds.
pub fn ttl_ms(ttl: &Value) -> Result<i64> {
    match ttl.as_f64() {
        Some(s) if s > 0.0 && s <= MAX_TTL_SECS => Ok(((s * 1000.0).ceil() as i64).max(1)),
        _ => Err(PlazaError::Validation(format!("\"ttl\" must be a number of seconds above 0 and at most {MAX_TTL_SECS}"))),
    }
}

impl Actor for Cache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(SWEEP_INTERVAL, |act, _| act.sweep());
    }
}

/// The value under `key`, or `None` (missing or expired).
#[derive(Message)]
#[rtype(result = "Option<Value>")]
pub struct Get {
    pub key: String,
}

/// Stores `value`; `ttl_ms` expires it, `None` keeps it until evicted or deleted.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct Set {
    pub key: String,
    pub value: Value,
    pub ttl_ms: Option<i64>,
}

/// Removes `key`; answers whether it was there.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Del {
    pub key: String,
}

/// Adds `by` to the integer under `key` (a missing key counts as 0) and answers the sum. A
/// non-integer value is refused; the TTL is kept.
#[derive(Message)]
#[rtype(result = "Result<i64>")]
pub struct Incr {
    pub key: String,
    pub by: i64,
}

/// Sets a TTL on an existing key; answers whether it exists.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Expire {
    pub key: String,
    pub ttl_ms: i64,
}

#[derive(Debug, Clone, Copy, serde::Serialize, MessageResponse)]
pub struct CacheStats {
    pub entries: usize,
    pub bytes: usize,
    pub evicted: u64,
}

#[derive(Message)]
#[rtype(result = "CacheStats")]
pub struct Stats;

impl Handler<Get> for Cache {
    type Result = Option<Value>;
    fn handle(&mut self, msg: Get, _: &mut Context<Self>) -> Option<Value> {
        self.live(&msg.key).map(|e| e.value.clone())
    }
}

impl Handler<Set> for Cache {
    type Result = Result<()>;
    fn handle(&mut self, msg: Set, _: &mut Context<Self>) -> Result<()> {
        let expires_at = msg.ttl_ms.map(|t| self.clock.now_ms().saturating_add(t));
        self.insert(msg.key, msg.value, expires_at)
    }
}

impl Handler<Del> for Cache {
    type Result = bool;
    fn handle(&mut self, msg: Del, _: &mut Context<Self>) -> bool {
        self.live(&msg.key).is_some() && self.remove(&msg.key).is_some()
    }
}

impl Handler<Incr> for Cache {
    type Result = Result<i64>;
    fn handle(&mut self, msg: Incr, _: &mut Context<Self>) -> Result<i64> {
        let (current, expires_at) = match self.live(&msg.key) {
            Some(e) => match e.value.as_i64() {
                Some(n) => (n, e.expires_at),
                None => return Err(PlazaError::Validation(format!("the value at '{}' is not an integer", msg.key))),
            },
            None => (0, None),
        };
        let next = current
            .checked_add(msg.by)
            .ok_or_else(|| PlazaError::Validation("INCR would overflow a 64-bit integer".into()))?;
        self.insert(msg.key, Value::from(next), expires_at)?;
        Ok(next)
    }
}

impl Handler<Expire> for Cache {
    type Result = bool;
    fn handle(&mut self, msg: Expire, _: &mut Context<Self>) -> bool {
        let now = self.clock.now_ms();
        let Some(entry) = self.live(&msg.key) else { return false };
        let old = entry.expires_at.replace(now.saturating_add(msg.ttl_ms));
        if let Some(at) = old {
            self.expiries.remove(&(at, msg.key.clone()));
        }
        self.expiries.insert((now.saturating_add(msg.ttl_ms), msg.key));
        true
    }
}

impl Handler<Stats> for Cache {
    type Result = CacheStats;
    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> CacheStats {
        CacheStats { entries: self.entries.len(), bytes: self.bytes, evicted: self.evicted }
    }
}

/// One listed key: its size as counted against the byte bound and, with a TTL, when it expires.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub key: String,
    pub bytes: usize,
    /// Milliseconds since the epoch.
    pub expires_at: Option<i64>,
}

/// Live keys starting with `prefix`, in key order, at most `limit`; `total` counts every match.
#[derive(Debug, Clone, serde::Serialize, MessageResponse)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
    pub total: usize,
}

/// Lists keys for an operator (Studio). Does not count as a use, so listing never changes what
/// is evicted next.
#[derive(Message)]
#[rtype(result = "KeyList")]
pub struct Keys {
    pub prefix: String,
    pub limit: usize,
}

impl Handler<Keys> for Cache {
    type Result = KeyList;
    fn handle(&mut self, msg: Keys, _: &mut Context<Self>) -> KeyList {
        let now = self.clock.now_ms();
        let mut matched: Vec<(&String, &Entry)> = self
            .entries
            .iter()
            .filter(|(k, e)| k.starts_with(&msg.prefix) && e.expires_at.is_none_or(|at| at > now))
            .collect();
        let total = matched.len();
        matched.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let keys = matched
            .into_iter()
            .take(msg.limit)
            .map(|(k, e)| KeyInfo { key: k.clone(), bytes: e.bytes, expires_at: e.expires_at })
            .collect();
        KeyList { keys, total }
    }
}

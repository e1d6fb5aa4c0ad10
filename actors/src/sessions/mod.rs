//! The SessionStore actor: live sessions (users and guests), magic sign-in codes, expiry.
//!
//! A token is `selector` + `verifier` (16 + 32 random bytes from the OS, base64url). Sessions
//! are looked up by selector and the verifier's SHA-256 is compared in constant time, so
//! neither the table nor timing reveals a usable token. Sessions are written through the
//! Writer (same database, same durability) before the caller gets the token, and loaded back
//! at start, so they survive restarts; a revoked session is deleted and stays gone. Whenever a
//! session ends (revoked, or found expired) the Streams registry is told, so the WebSockets and
//! SSE streams opened with it close.

pub mod manage;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use sha2::{Digest, Sha256};

use crate::error::{PlazaError, Result};
use crate::model::policy::AuthContext;
use crate::store::writer::{Write, WriteOp, Writer};
use crate::streams::SessionsEnded;

pub const SELECTOR_BYTES: usize = 16;
pub const VERIFIER_BYTES: usize = 32;
/// Length of a token as issued; anything else is refused before any lookup.
pub const TOKEN_LEN: usize = 22 + 43;
/// Most live sessions held; new ones are refused (503) past this.
pub const MAX_SESSIONS: usize = 2_000_000;
pub const MAGIC_CODE_TTL: Duration = Duration::from_secs(600);
pub const MAGIC_CODE_ATTEMPTS: u32 = 5;
/// Codes sent to one address per `MAGIC_SEND_WINDOW`.
pub const MAGIC_SENDS_PER_WINDOW: usize = 5;
pub const MAGIC_SEND_WINDOW: Duration = Duration::from_secs(600);
/// Pending codes held at once (each is one address).
pub const MAX_PENDING_CODES: usize = 100_000;
pub const MAX_EMAIL_LEN: usize = 254;
/// How often expired sessions are dropped (and their streams closed); a short TTL checks more
/// often, so a stream never outlives its session by more than a quarter of the TTL.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
const MIN_PRUNE_INTERVAL: Duration = Duration::from_millis(100);
/// Most `last_used_at` updates written per prune tick (the rest wait for the next one).
const MAX_TOUCH_FLUSH: usize = 10_000;
/// Longest user agent kept with a session.
pub const MAX_USER_AGENT_LEN: usize = 256;

/// Where a session was created from, shown in the caller's session list.
#[derive(Debug, Clone, Default)]
pub struct SessionMeta {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// An API key: a session that never slides or expires, named, maybe scoped to reads.
#[derive(Debug, Clone)]
struct KeyInfo {
    name: String,
    read_only: bool,
}

#[derive(Debug, Clone)]
struct Session {
    verifier_hash: [u8; 32],
    user_id: String,
    guest: bool,
    expires_at_ms: i64,
    created_ms: i64,
    last_used_ms: i64,
    meta: SessionMeta,
    key: Option<KeyInfo>,
}

#[derive(Debug)]
struct MagicCode {
    salt: [u8; 16],
    code_hash: [u8; 32],
    expires_at_ms: i64,
    attempts: u32,
}

pub struct SessionStore {
    sessions: HashMap<String, Session>,
    codes: HashMap<String, MagicCode>,
    sends: HashMap<String, VecDeque<i64>>,
    writer: Addr<Writer>,
    ttl_ms: i64,
    /// Told of every session that ends.
    ended: Recipient<SessionsEnded>,
    /// Selectors of each user's sessions and API keys.
    by_user: HashMap<String, HashSet<String>>,
    /// Accounts whose email is confirmed (`auth.verified`).
    verified: HashSet<String>,
    /// Sessions used since their `last_used_at` was last written.
    touched: HashSet<String>,
}

/// A freshly issued session, as the auth endpoints answer it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IssuedSession {
    pub token: String,
    pub user_id: String,
    pub guest: bool,
    pub expires_at: String,
    #[serde(skip)]
    pub max_age_secs: i64,
    /// The public id of the session (as listed by `ListSessions`), never the token's selector.
    #[serde(skip)]
    pub id: String,
}

/// API keys "never" expire: a century.
const API_KEY_LIFETIME_MS: i64 = 100 * 365 * 24 * 3600 * 1000;

/// The id a session or key is listed and revoked by: derived from the selector so nothing
/// extra is stored, and one-way so a listed id cannot be used to look a token up.
pub fn public_id(selector: &str) -> String {
    URL_SAFE_NO_PAD.encode(&sha256(&[b"plaza-session-id:", selector.as_bytes()])[..16])
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| PlazaError::Internal(format!("OS randomness unavailable: {e}")))?;
    Ok(buf)
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// Splits a token into (selector, verifier hash); `None` when it cannot be one of ours.
fn parse_token(token: &str) -> Option<(&str, [u8; 32])> {
    if token.len() != TOKEN_LEN || !token.is_ascii() {
        return None;
    }
    let (selector, verifier) = token.split_at(22);
    let verifier = URL_SAFE_NO_PAD.decode(verifier).ok()?;
    Some((selector, sha256(&[&verifier])))
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Emails are compared trimmed and lower-cased; that form is also the user id a code signs in.
pub fn normalize_email(email: &str) -> Result<String> {
    let e = email.trim().to_lowercase();
    let valid = e.len() <= MAX_EMAIL_LEN
        && e.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(e)
    } else {
        Err(PlazaError::Validation("email must be an address like name@example.com".into()))
    }
}

impl SessionStore {
    /// Loads unexpired sessions from the database. Runs once at start, before serving.
    pub fn load(conn: &Connection, writer: Addr<Writer>, ttl: Duration, ended: Recipient<SessionsEnded>) -> Result<SessionStore> {
        let mut stmt = conn.prepare(
            "SELECT selector, verifier_hash, user_id, guest, expires_at, created_at, last_used_at, user_agent, ip, kind, name
             FROM _plaza_sessions WHERE expires_at > ?",
        )?;
        let rows = stmt.query_map([now_ms()], |r| {
            let hash: Vec<u8> = r.get(1)?;
            let created_ms: i64 = r.get(5)?;
            let kind: Option<String> = r.get(9)?;
            let key = kind.filter(|k| k.starts_with("key")).map(|k| KeyInfo {
                name: r.get::<_, Option<String>>(10).ok().flatten().unwrap_or_default(),
                read_only: k == "key_read",
            });
            Ok((
                r.get::<_, String>(0)?,
                Session {
                    verifier_hash: hash.try_into().unwrap_or([0; 32]),
                    user_id: r.get(2)?,
                    guest: r.get(3)?,
                    expires_at_ms: r.get(4)?,
                    created_ms,
                    last_used_ms: r.get::<_, Option<i64>>(6)?.unwrap_or(created_ms),
                    meta: SessionMeta { user_agent: r.get(7)?, ip: r.get(8)? },
                    key,
                },
            ))
        })?;
        let sessions = rows.collect::<rusqlite::Result<HashMap<_, _>>>()?;
        let verified = conn
            .prepare("SELECT id FROM _plaza_users WHERE verified = 1")?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<HashSet<_>>>()?;
        tracing::info!(sessions = sessions.len(), "loaded sessions");
        let mut by_user: HashMap<String, HashSet<String>> = HashMap::new();
        for (selector, s) in &sessions {
            by_user.entry(s.user_id.clone()).or_default().insert(selector.clone());
        }
        Ok(SessionStore {
            sessions,
            codes: HashMap::new(),
            sends: HashMap::new(),
            writer,
            ttl_ms: ttl.as_millis().min(i64::MAX as u128) as i64,
            ended,
            by_user,
            verified,
            touched: HashSet::new(),
        })
    }

    fn add(&mut self, selector: String, session: Session) {
        self.by_user.entry(session.user_id.clone()).or_default().insert(selector.clone());
        self.sessions.insert(selector, session);
    }

    /// Forgets a session in memory (the caller deletes its row and tells `ended`).
    fn forget(&mut self, selector: &str) -> Option<Session> {
        let session = self.sessions.remove(selector)?;
        if let Some(set) = self.by_user.get_mut(&session.user_id) {
            set.remove(selector);
            if set.is_empty() {
                self.by_user.remove(&session.user_id);
            }
        }
        self.touched.remove(selector);
        Some(session)
    }

    fn persist(&self, ops: Vec<WriteOp>) -> impl std::future::Future<Output = Result<()>> {
        let sent = self.writer.send(Write { auth: AuthContext::admin(), ops });
        async move { sent.await?.map(|_| ()) }
    }

    fn issue_with(
        &mut self,
        user_id: String,
        guest: bool,
        meta: SessionMeta,
        key: Option<KeyInfo>,
    ) -> ResponseActFuture<Self, Result<IssuedSession>> {
        if self.sessions.len() >= MAX_SESSIONS {
            return Box::pin(fut::ready(Err(PlazaError::Unavailable("session capacity reached".into()))));
        }
        let (selector, verifier) = match (random::<SELECTOR_BYTES>(), random::<VERIFIER_BYTES>()) {
            (Ok(s), Ok(v)) => (URL_SAFE_NO_PAD.encode(s), v),
            (Err(e), _) | (_, Err(e)) => return Box::pin(fut::ready(Err(e))),
        };
        let token = format!("{selector}{}", URL_SAFE_NO_PAD.encode(verifier));
        let now = now_ms();
        // API keys do not expire by time (only by revocation): a century stands for never.
        let lifetime = if key.is_some() { API_KEY_LIFETIME_MS } else { self.ttl_ms };
        let text = |v: &Option<String>| v.clone().map_or(SqlValue::Null, SqlValue::Text);
        let kind = match &key {
            None => SqlValue::Null,
            Some(k) => SqlValue::Text(if k.read_only { "key_read" } else { "key_write" }.into()),
        };
        let name = text(&key.as_ref().map(|k| k.name.clone()));
        let session = Session {
            verifier_hash: sha256(&[&verifier]),
            user_id,
            guest,
            expires_at_ms: now.saturating_add(lifetime),
            created_ms: now,
            last_used_ms: now,
            meta,
            key,
        };
        let op = WriteOp::Internal {
            sql: "INSERT INTO _plaza_sessions (selector, verifier_hash, user_id, guest, created_at, expires_at,
                  last_used_at, user_agent, ip, kind, name) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            params: vec![
                SqlValue::Text(selector.clone()),
                SqlValue::Blob(session.verifier_hash.to_vec()),
                SqlValue::Text(session.user_id.clone()),
                SqlValue::Integer(guest as i64),
                SqlValue::Integer(now),
                SqlValue::Integer(session.expires_at_ms),
                SqlValue::Integer(now),
                text(&session.meta.user_agent),
                text(&session.meta.ip),
                kind,
                name,
            ],
        };
        let ttl_secs = self.ttl_ms / 1000;
        Box::pin(self.persist(vec![op]).into_actor(self).map(move |saved, act, _| {
            saved?;
            let issued = IssuedSession {
                token,
                user_id: session.user_id.clone(),
                guest,
                expires_at: rfc3339(session.expires_at_ms),
                max_age_secs: ttl_secs,
                id: public_id(&selector),
            };
            act.add(selector, session);
            Ok(issued)
        }))
    }
}

impl Actor for SessionStore {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = PRUNE_INTERVAL.min(Duration::from_millis(self.ttl_ms as u64 / 4)).max(MIN_PRUNE_INTERVAL);
        ctx.run_interval(every, |act, ctx| {
            act.prune(ctx);
        });
    }
}

impl SessionStore {
    /// Drops expired sessions (closing their streams) and codes, in memory and on disk;
    /// answers how many sessions ended.
    /// Drops expired sessions (their streams are told), flushes recent `last_used_at` times,
    /// and forgets stale codes and send counts. Answers how many sessions ended.
    fn prune(&mut self, ctx: &mut Context<Self>) -> usize {
        let now = now_ms();
        let expired: Vec<String> = self.sessions.iter().filter(|(_, s)| s.expires_at_ms <= now).map(|(k, _)| k.clone()).collect();
        for selector in &expired {
            self.forget(selector);
        }
        let ended = expired.len();
        self.ended.do_send(SessionsEnded { sessions: expired.iter().map(|s| s.as_str().into()).collect() });
        let mut ops = Vec::new();
        let touched: Vec<String> = self.touched.iter().take(MAX_TOUCH_FLUSH).cloned().collect();
        for selector in touched {
            self.touched.remove(&selector);
            if let Some(s) = self.sessions.get(&selector) {
                ops.push(WriteOp::Internal {
                    sql: "UPDATE _plaza_sessions SET last_used_at = ? WHERE selector = ?",
                    params: vec![SqlValue::Integer(s.last_used_ms), SqlValue::Text(selector)],
                });
            }
        }
        self.codes.retain(|_, c| c.expires_at_ms > now);
        let window = MAGIC_SEND_WINDOW.as_millis() as i64;
        self.sends.retain(|_, times| times.back().is_some_and(|t| now - t < window));
        ops.push(WriteOp::Internal { sql: "DELETE FROM _plaza_sessions WHERE expires_at <= ?", params: vec![SqlValue::Integer(now)] });
        self.persist(ops).into_actor(self).map(|r, _, _| {
            if let Err(e) = r {
                tracing::warn!(error = %e, "could not prune expired sessions");
            }
        }).spawn(ctx);
        ended
    }
}

/// Prune expired sessions now (the `sessions_cleanup` job; the store also does it on a timer).
/// Answers how many sessions ended.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct PruneExpired;

impl Handler<PruneExpired> for SessionStore {
    type Result = usize;
    fn handle(&mut self, _: PruneExpired, ctx: &mut Context<Self>) -> usize {
        self.prune(ctx)
    }
}

/// A session for `user_id` (admin or dev mode only: the HTTP layer decides).
#[derive(Message)]
#[rtype(result = "Result<IssuedSession>")]
pub struct CreateSession {
    pub user_id: String,
    pub meta: SessionMeta,
}

impl Handler<CreateSession> for SessionStore {
    type Result = ResponseActFuture<Self, Result<IssuedSession>>;
    fn handle(&mut self, msg: CreateSession, _: &mut Context<Self>) -> Self::Result {
        self.issue_with(msg.user_id, false, msg.meta, None)
    }
}

/// A guest session with a fresh `guest_…` user id.
#[derive(Message)]
#[rtype(result = "Result<IssuedSession>")]
pub struct CreateGuest {
    pub meta: SessionMeta,
}

impl Handler<CreateGuest> for SessionStore {
    type Result = ResponseActFuture<Self, Result<IssuedSession>>;
    fn handle(&mut self, msg: CreateGuest, _: &mut Context<Self>) -> Self::Result {
        self.issue_with(format!("guest_{}", uuid::Uuid::now_v7().simple()), true, msg.meta, None)
    }
}

/// The caller behind a token, or `None` (unknown, revoked, expired). Sliding expiry: a session
/// used in the second half of its life is extended to a full TTL.
#[derive(Message)]
#[rtype(result = "Option<AuthContext>")]
pub struct Resolve {
    pub token: String,
}

impl Handler<Resolve> for SessionStore {
    type Result = Option<AuthContext>;
    fn handle(&mut self, msg: Resolve, ctx: &mut Context<Self>) -> Option<AuthContext> {
        let (selector, presented) = parse_token(&msg.token)?;
        let now = now_ms();
        let session = self.sessions.get_mut(selector)?;
        if !constant_time_eq::constant_time_eq(&session.verifier_hash, &presented) {
            return None;
        }
        if session.expires_at_ms <= now {
            self.forget(selector);
            self.ended.do_send(SessionsEnded { sessions: vec![selector.into()] });
            return None;
        }
        session.last_used_ms = now;
        let auth = AuthContext {
            user_id: Some(session.user_id.clone()),
            guest: session.guest,
            admin: false,
            verified: self.verified.contains(&session.user_id),
            read_only: session.key.as_ref().is_some_and(|k| k.read_only),
            api_key: session.key.is_some(),
            session: Some(selector.into()),
        };
        self.touched.insert(selector.to_string());
        if session.key.is_none() && session.expires_at_ms - now < self.ttl_ms / 2 {
            session.expires_at_ms = now.saturating_add(self.ttl_ms);
            let op = WriteOp::Internal {
                sql: "UPDATE _plaza_sessions SET expires_at = ? WHERE selector = ?",
                params: vec![SqlValue::Integer(session.expires_at_ms), SqlValue::Text(selector.to_string())],
            };
            // Best effort: if this is lost, the session just expires at its previous time.
            self.persist(vec![op]).into_actor(self).map(|_, _, _| ()).spawn(ctx);
        }
        Some(auth)
    }
}

/// Ends a session; answers whether there was one. Deleted before answering, so a restart
/// cannot bring it back.
#[derive(Message)]
#[rtype(result = "Result<bool>")]
pub struct Revoke {
    pub token: String,
}

impl Handler<Revoke> for SessionStore {
    type Result = ResponseActFuture<Self, Result<bool>>;
    fn handle(&mut self, msg: Revoke, _: &mut Context<Self>) -> Self::Result {
        let Some((selector, presented)) = parse_token(&msg.token) else { return Box::pin(fut::ready(Ok(false))) };
        let known = self
            .sessions
            .get(selector)
            .is_some_and(|s| constant_time_eq::constant_time_eq(&s.verifier_hash, &presented));
        if !known {
            return Box::pin(fut::ready(Ok(false)));
        }
        let selector = selector.to_string();
        self.forget(&selector);
        self.ended.do_send(SessionsEnded { sessions: vec![selector.as_str().into()] });
        let op = WriteOp::Internal { sql: "DELETE FROM _plaza_sessions WHERE selector = ?", params: vec![SqlValue::Text(selector)] };
        Box::pin(self.persist(vec![op]).into_actor(self).map(|r, _, _| r.map(|()| true)))
    }
}

/// A new 6-digit code for `email` (replacing any pending one); the caller delivers it.
#[derive(Message)]
#[rtype(result = "Result<String>")]
pub struct IssueMagicCode {
    pub email: String,
}

impl Handler<IssueMagicCode> for SessionStore {
    type Result = Result<String>;
    fn handle(&mut self, msg: IssueMagicCode, _: &mut Context<Self>) -> Result<String> {
        let email = normalize_email(&msg.email)?;
        let now = now_ms();
        let window = MAGIC_SEND_WINDOW.as_millis() as i64;
        let sends = self.sends.entry(email.clone()).or_default();
        while sends.front().is_some_and(|t| now - t >= window) {
            sends.pop_front();
        }
        if sends.len() >= MAGIC_SENDS_PER_WINDOW {
            let retry = sends.front().map_or(1, |t| (window - (now - t)) / 1000 + 1);
            return Err(PlazaError::RateLimited { retry_after_secs: retry.max(1) as u64 });
        }
        if self.codes.len() >= MAX_PENDING_CODES && !self.codes.contains_key(&email) {
            return Err(PlazaError::Unavailable("too many pending sign-in codes; retry shortly".into()));
        }
        let n = u32::from_le_bytes(random::<4>()?) % 1_000_000;
        let code = format!("{n:06}");
        let salt = random::<16>()?;
        sends.push_back(now);
        self.codes.insert(
            email,
            MagicCode {
                salt,
                code_hash: sha256(&[&salt, code.as_bytes()]),
                expires_at_ms: now + MAGIC_CODE_TTL.as_millis() as i64,
                attempts: 0,
            },
        );
        Ok(code)
    }
}

/// Exchanges a code for a session (user id = the normalised email). Wrong codes count; the
/// fifth wrong one, or an expired code, invalidates it.
#[derive(Message)]
#[rtype(result = "Result<IssuedSession>")]
pub struct VerifyMagicCode {
    pub email: String,
    pub code: String,
    pub meta: SessionMeta,
}

impl Handler<VerifyMagicCode> for SessionStore {
    type Result = ResponseActFuture<Self, Result<IssuedSession>>;
    fn handle(&mut self, msg: VerifyMagicCode, _: &mut Context<Self>) -> Self::Result {
        let invalid = || PlazaError::Unauthorized("invalid or expired code".into());
        let email = match normalize_email(&msg.email) {
            Ok(e) => e,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let Some(pending) = self.codes.get_mut(&email) else { return Box::pin(fut::ready(Err(invalid()))) };
        let presented = sha256(&[&pending.salt, msg.code.trim().as_bytes()]);
        if pending.expires_at_ms <= now_ms() || pending.attempts >= MAGIC_CODE_ATTEMPTS {
            self.codes.remove(&email);
            return Box::pin(fut::ready(Err(invalid())));
        }
        if !constant_time_eq::constant_time_eq(&pending.code_hash, &presented) {
            pending.attempts += 1;
            if pending.attempts >= MAGIC_CODE_ATTEMPTS {
                self.codes.remove(&email);
            }
            return Box::pin(fut::ready(Err(invalid())));
        }
        self.codes.remove(&email);
        self.issue_with(email, false, msg.meta, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_only_in_our_shape() {
        assert!(parse_token("short").is_none());
        assert!(parse_token(&"é".repeat(TOKEN_LEN / 2)).is_none());
        let token = format!("{}{}", URL_SAFE_NO_PAD.encode([1u8; 16]), URL_SAFE_NO_PAD.encode([2u8; 32]));
        assert_eq!(token.len(), TOKEN_LEN);
        let (selector, hash) = parse_token(&token).unwrap();
        assert_eq!(selector, URL_SAFE_NO_PAD.encode([1u8; 16]));
        assert_eq!(hash, sha256(&[&[2u8; 32]]));
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(normalize_email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        assert!(normalize_email("nope").is_err());
        assert!(normalize_email("a@b").is_err());
        assert!(normalize_email(&format!("{}@x.io", "a".repeat(300))).is_err());
    }
}

//! The Accounts actor: users with an email and a password (argon2id), email verification and
//! password reset codes, login failure tracking (per account), and guest → account upgrades.
//! It owns the `_plaza_users` table (loaded at start, written through the Writer before any
//! caller is answered) and answers who a credential belongs to; sessions themselves stay with
//! the `SessionStore`, which the HTTP layer asks once an account has been proven.
//!
//! Password hashing never runs here: hashes are made and checked on the `Hasher` threads, and
//! this actor only awaits them. Unknown emails are checked against a dummy hash of the same
//! cost, so a login answers in the same time and shape whether or not the account exists.

pub mod crypto;
pub mod hasher;
pub mod identities;
pub mod password;
pub mod schema;
pub mod totp;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use actix::prelude::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use crate::error::{PlazaError, Result};
use crate::model::policy::AuthContext;
use crate::sessions::normalize_email;
use crate::store::writer::{Write, WriteOp, Writer};
use crypto::{sha256, SecretBox};
use hasher::{Hasher, HashPassword, VerifyPassword};

/// Emailed codes (verification, reset): 6 digits, valid this long, this many tries.
pub const CODE_TTL: Duration = Duration::from_secs(600);
pub const CODE_ATTEMPTS: u32 = 5;
/// Codes sent to one address (or account) per `CODE_SEND_WINDOW`, per purpose.
pub const CODE_SENDS_PER_WINDOW: usize = 5;
pub const CODE_SEND_WINDOW: Duration = Duration::from_secs(600);
/// Pending codes, tracked addresses and mfa logins held at once; past it new ones wait.
pub const MAX_PENDING: usize = 100_000;
/// A login that passed the password but still owes a TOTP code has this long to give it.
pub const MFA_TTL: Duration = Duration::from_secs(300);
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);
/// Password hashes waiting per hashing thread before new sign-ins are told to come back
/// (503 `OVERLOADED`, `Retry-After: 1`): a burst queues for well under a second, never without
/// bound.
pub const MAX_QUEUED_HASHES_PER_THREAD: usize = 32;

/// A place in the hashing queue, given back when dropped (the work finished or was abandoned).
pub(crate) struct HashPermit(std::rc::Rc<std::cell::Cell<usize>>);

impl Drop for HashPermit {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// What accounts can be configured with.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub hash: hasher::HashParams,
    /// Threads that hash passwords.
    pub hash_threads: usize,
    pub password_min_chars: usize,
    /// Failed logins per account (email) within `failure_window` before it is locked out
    /// until the oldest failure leaves the window.
    pub max_failures: usize,
    pub failure_window: Duration,
    /// Seals TOTP secrets; without it TOTP cannot be enrolled.
    pub secret_key: Option<[u8; 32]>,
    pub totp_issuer: String,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            hash: hasher::HashParams::default(),
            hash_threads: 1,
            password_min_chars: 10,
            max_failures: 5,
            failure_window: Duration::from_secs(900),
            secret_key: None,
            totp_issuer: "Plaza".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) email: Option<String>,
    pub(crate) password_hash: Option<String>,
    pub(crate) verified: bool,
    /// Sealed TOTP secret; `totp_enabled` once a code from it was confirmed.
    pub(crate) totp_secret: Option<Vec<u8>>,
    pub(crate) totp_enabled: bool,
    pub(crate) backup_codes: HashSet<[u8; 32]>,
    /// The last TOTP time step accepted, so a code cannot be replayed within its window.
    pub(crate) last_totp_step: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodePurpose {
    Verify,
    Reset,
}

#[derive(Debug)]
struct PendingCode {
    salt: [u8; 16],
    hash: [u8; 32],
    expires_at_ms: i64,
    attempts: u32,
    /// Whose code it is (the account id).
    user_id: String,
}

#[derive(Debug)]
pub(crate) struct MfaPending {
    pub(crate) user_id: String,
    pub(crate) expires_at_ms: i64,
    pub(crate) attempts: u32,
}

/// Who passed a sign-in step: the session to issue, or the second factor still owed.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: String,
    pub verified: bool,
    /// Set when the account has TOTP on: no session yet; present this with a code.
    pub mfa_token: Option<String>,
}

pub struct Accounts {
    pub(crate) users: HashMap<String, User>,
    by_email: HashMap<String, String>,
    /// Provider identities: (provider, subject) → user id.
    pub(crate) identities: HashMap<(String, String), String>,
    /// Emails (and guest ids) with a registration in flight.
    pub(crate) reserved: HashSet<String>,
    failures: HashMap<String, VecDeque<i64>>,
    codes: HashMap<(CodePurpose, String), PendingCode>,
    sends: HashMap<(CodePurpose, String), VecDeque<i64>>,
    pub(crate) mfa: HashMap<[u8; 32], MfaPending>,
    /// OAuth sign-ins under way, by SHA-256 of their state.
    pub(crate) sign_ins: HashMap<[u8; 32], identities::PendingSignIn>,
    pub(crate) writer: Addr<Writer>,
    pub(crate) hasher: Addr<Hasher>,
    pub(crate) settings: AccountSettings,
    pub(crate) secrets: Option<SecretBox>,
    dummy_hash: String,
    /// Hash jobs sent to the `Hasher` and not finished.
    hashing: std::rc::Rc<std::cell::Cell<usize>>,
}

pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn invalid_login() -> PlazaError {
    PlazaError::Unauthorized("invalid email or password".into())
}

fn invalid_code() -> PlazaError {
    PlazaError::Unauthorized("invalid or expired code".into())
}

pub(crate) fn text(v: &Option<String>) -> SqlValue {
    v.clone().map_or(SqlValue::Null, SqlValue::Text)
}

impl Accounts {
    /// Loads every account. Runs once at start (after `schema::migrate`), before serving; the
    /// dummy hash is made here, on the starting thread, once.
    pub fn load(conn: &Connection, writer: Addr<Writer>, settings: AccountSettings) -> Result<Accounts> {
        let mut users = HashMap::new();
        let mut stmt = conn.prepare("SELECT id, email, password_hash, verified, totp_secret, totp_enabled, totp_last_step FROM _plaza_users")?;
        let rows = stmt.query_map([], |r| {
            Ok(User {
                id: r.get(0)?,
                email: r.get(1)?,
                password_hash: r.get(2)?,
                verified: r.get(3)?,
                totp_secret: r.get(4)?,
                totp_enabled: r.get(5)?,
                backup_codes: HashSet::new(),
                last_totp_step: r.get::<_, i64>(6)?.max(0) as u64,
            })
        })?;
        for u in rows {
            let u = u?;
            users.insert(u.id.clone(), u);
        }
        let mut stmt = conn.prepare("SELECT user_id, code_hash FROM _plaza_backup_codes")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)))? {
            let (user, hash) = row?;
            if let (Some(u), Ok(h)) = (users.get_mut(&user), <[u8; 32]>::try_from(hash)) {
                u.backup_codes.insert(h);
            }
        }
        let mut identities = HashMap::new();
        let mut stmt = conn.prepare("SELECT provider, subject, user_id FROM _plaza_identities")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))? {
            let (p, s, u) = row?;
            identities.insert((p, s), u);
        }
        let sign_ins = identities::load_states(conn)?.into_iter().collect();
        let by_email = users.values().filter_map(|u| Some((u.email.clone()?, u.id.clone()))).collect();
        let probe = Hasher::new(settings.hash)?;
        let dummy_hash = probe.hash("plaza dummy password, never matches a login")?;
        let threads = settings.hash_threads.max(1);
        let params = settings.hash;
        let hasher = SyncArbiter::start(threads, move || {
            // Checked above with the same parameters, so this cannot fail; fall back anyway.
            Hasher::new(params).unwrap_or_else(|_| probe_default())
        });
        tracing::info!(accounts = users.len(), "loaded accounts");
        Ok(Accounts {
            users,
            by_email,
            identities,
            reserved: HashSet::new(),
            failures: HashMap::new(),
            codes: HashMap::new(),
            sends: HashMap::new(),
            mfa: HashMap::new(),
            sign_ins,
            writer,
            hasher,
            secrets: settings.secret_key.map(SecretBox::new),
            settings,
            dummy_hash,
            hashing: Default::default(),
        })
    }

    pub(crate) fn persist(&self, ops: Vec<WriteOp>) -> impl std::future::Future<Output = Result<()>> {
        let sent = self.writer.send(Write { auth: AuthContext::admin(), ops });
        async move { sent.await?.map(|_| ()) }
    }

    /// A place in the hashing queue, or 503 `OVERLOADED` when it is full.
    pub(crate) fn hash_permit(&self) -> Result<HashPermit> {
        let limit = MAX_QUEUED_HASHES_PER_THREAD * self.settings.hash_threads.max(1);
        if self.hashing.get() >= limit {
            return Err(PlazaError::Overloaded { retry_after_secs: 1 });
        }
        self.hashing.set(self.hashing.get() + 1);
        Ok(HashPermit(self.hashing.clone()))
    }

    pub(crate) fn user_by_email(&self, email: &str) -> Option<&User> {
        self.by_email.get(email).and_then(|id| self.users.get(id))
    }

    pub(crate) fn add_user(&mut self, user: User) {
        if let Some(e) = &user.email {
            self.by_email.insert(e.clone(), user.id.clone());
        }
        self.users.insert(user.id.clone(), user);
    }

    /// 429 while `email` has `max_failures` failures within the window (known or not, so the
    /// lockout says nothing about whether the account exists).
    fn check_lockout(&mut self, email: &str) -> Result<()> {
        let now = now_ms();
        let window = self.settings.failure_window.as_millis() as i64;
        let Some(times) = self.failures.get_mut(email) else { return Ok(()) };
        while times.front().is_some_and(|t| now - t >= window) {
            times.pop_front();
        }
        if times.len() >= self.settings.max_failures.max(1) {
            let retry = times.front().map_or(1, |t| (window - (now - t)) / 1000 + 1);
            return Err(PlazaError::RateLimited { retry_after_secs: retry.max(1) as u64 });
        }
        Ok(())
    }

    /// Counts a failed attempt; answers whether the account is now locked.
    pub(crate) fn record_failure(&mut self, email: &str) -> bool {
        if self.failures.len() >= MAX_PENDING && !self.failures.contains_key(email) {
            return false;
        }
        let times = self.failures.entry(email.to_string()).or_default();
        times.push_back(now_ms());
        times.len() >= self.settings.max_failures.max(1)
    }

    /// After the second step (or none needed): an mfa token if TOTP is on, else a session to issue.
    pub(crate) fn signed_in(&mut self, user_id: &str) -> Result<SignedIn> {
        let user = self.users.get(user_id).ok_or_else(invalid_login)?;
        let mut out = SignedIn { user_id: user.id.clone(), verified: user.verified, mfa_token: None };
        if user.totp_enabled {
            if self.mfa.len() >= MAX_PENDING {
                return Err(PlazaError::Unavailable("too many sign-ins waiting for a second factor; retry shortly".into()));
            }
            let token = crypto::token()?;
            let expires_at_ms = now_ms() + MFA_TTL.as_millis() as i64;
            self.mfa.insert(sha256(&[token.as_bytes()]), MfaPending { user_id: out.user_id.clone(), expires_at_ms, attempts: 0 });
            out.mfa_token = Some(token);
        }
        Ok(out)
    }

    /// A new emailed code for `key` (an email or a user id), replacing any pending one.
    fn issue_code(&mut self, purpose: CodePurpose, key: &str, user_id: &str) -> Result<String> {
        let now = now_ms();
        let window = CODE_SEND_WINDOW.as_millis() as i64;
        let sends = self.sends.entry((purpose, key.to_string())).or_default();
        while sends.front().is_some_and(|t| now - t >= window) {
            sends.pop_front();
        }
        if sends.len() >= CODE_SENDS_PER_WINDOW {
            let retry = sends.front().map_or(1, |t| (window - (now - t)) / 1000 + 1);
            return Err(PlazaError::RateLimited { retry_after_secs: retry.max(1) as u64 });
        }
        if self.codes.len() >= MAX_PENDING && !self.codes.contains_key(&(purpose, key.to_string())) {
            return Err(PlazaError::Unavailable("too many pending codes; retry shortly".into()));
        }
        sends.push_back(now);
        let code = crypto::digits(6)?;
        let salt = crypto::random::<16>()?;
        self.codes.insert(
            (purpose, key.to_string()),
            PendingCode {
                salt,
                hash: sha256(&[&salt, code.as_bytes()]),
                expires_at_ms: now + CODE_TTL.as_millis() as i64,
                attempts: 0,
                user_id: user_id.to_string(),
            },
        );
        Ok(code)
    }

    /// Checks (and on success consumes) a code; answers the user it was issued for.
    fn take_code(&mut self, purpose: CodePurpose, key: &str, code: &str) -> Result<String> {
        let k = (purpose, key.to_string());
        let Some(pending) = self.codes.get_mut(&k) else { return Err(invalid_code()) };
        if pending.expires_at_ms <= now_ms() || pending.attempts >= CODE_ATTEMPTS {
            self.codes.remove(&k);
            return Err(invalid_code());
        }
        let presented = sha256(&[&pending.salt, code.trim().as_bytes()]);
        if !constant_time_eq::constant_time_eq(&pending.hash, &presented) {
            pending.attempts += 1;
            if pending.attempts >= CODE_ATTEMPTS {
                self.codes.remove(&k);
            }
            return Err(invalid_code());
        }
        Ok(self.codes.remove(&k).map(|p| p.user_id).unwrap_or_default())
    }
}

fn probe_default() -> Hasher {
    // Only reachable if parameters that were just accepted are refused; OWASP's are always valid.
    match Hasher::new(hasher::HashParams::default()) {
        Ok(h) => h,
        Err(_) => unreachable!("default argon2 parameters are valid"),
    }
}

impl Actor for Accounts {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(PRUNE_INTERVAL, |act, _| {
            let now = now_ms();
            let fail_window = act.settings.failure_window.as_millis() as i64;
            act.failures.retain(|_, t| t.back().is_some_and(|last| now - last < fail_window));
            act.codes.retain(|_, c| c.expires_at_ms > now);
            let send_window = CODE_SEND_WINDOW.as_millis() as i64;
            act.sends.retain(|_, t| t.back().is_some_and(|last| now - last < send_window));
            act.mfa.retain(|_, m| m.expires_at_ms > now);
            act.sign_ins.retain(|_, s| s.expires_at_ms > now);
            let op = WriteOp::Internal {
                sql: "DELETE FROM _plaza_oauth_states WHERE expires_at <= ?",
                params: vec![SqlValue::Integer(now)],
            };
            let saved = act.persist(vec![op]);
            actix::spawn(async move {
                let _ = saved.await;
            });
        });
    }
}

/// A new password account, or (with `guest_id`) the guest becoming one under the same id.
#[derive(Message)]
#[rtype(result = "Result<SignedIn>")]
pub struct Register {
    pub email: String,
    pub password: String,
    pub guest_id: Option<String>,
}

impl Handler<Register> for Accounts {
    type Result = ResponseActFuture<Self, Result<SignedIn>>;
    fn handle(&mut self, msg: Register, _: &mut Context<Self>) -> Self::Result {
        let prepared = (|| {
            let email = normalize_email(&msg.email)?;
            password::check(&msg.password, Some(&email), self.settings.password_min_chars)?;
            if self.by_email.contains_key(&email) || self.reserved.contains(&email) {
                return Err(PlazaError::Conflict("an account with this email already exists".into()));
            }
            let id = match &msg.guest_id {
                Some(g) if self.users.contains_key(g) || self.reserved.contains(g) => {
                    return Err(PlazaError::Conflict("this guest is already an account".into()))
                }
                Some(g) => g.clone(),
                None => uuid::Uuid::now_v7().to_string(),
            };
            Ok((email, id))
        })();
        let (email, id, permit) = match prepared.and_then(|(e, i)| Ok((e, i, self.hash_permit()?))) {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        self.reserved.insert(email.clone());
        self.reserved.insert(id.clone());
        let (hasher, writer) = (self.hasher.clone(), self.writer.clone());
        let (e2, id2) = (email.clone(), id.clone());
        let work = async move {
            let hash = hasher.send(HashPassword { password: msg.password }).await;
            drop(permit);
            let hash = hash??;
            let op = WriteOp::Internal {
                sql: "INSERT INTO _plaza_users (id, email, password_hash, verified, created_at, last_login_at) VALUES (?,?,?,0,?,?)",
                params: vec![
                    SqlValue::Text(id2),
                    SqlValue::Text(e2),
                    SqlValue::Text(hash.clone()),
                    SqlValue::Integer(now_ms()),
                    SqlValue::Integer(now_ms()),
                ],
            };
            writer.send(Write { auth: AuthContext::admin(), ops: vec![op] }).await??;
            Ok::<_, PlazaError>(hash)
        };
        Box::pin(work.into_actor(self).map(move |hash, act, _| {
            act.reserved.remove(&email);
            act.reserved.remove(&id);
            let hash = hash?;
            act.add_user(User {
                id: id.clone(),
                email: Some(email),
                password_hash: Some(hash),
                verified: false,
                totp_secret: None,
                totp_enabled: false,
                backup_codes: HashSet::new(),
                last_totp_step: 0,
            });
            Ok(SignedIn { user_id: id, verified: false, mfa_token: None })
        }))
    }
}

/// Email + password. Wrong password, unknown email and a provider-only account all answer the
/// same 401 after the same hashing work; too many failures for one email answer 429.
#[derive(Message)]
#[rtype(result = "Result<SignedIn>")]
pub struct Login {
    pub email: String,
    pub password: String,
}

impl Handler<Login> for Accounts {
    type Result = ResponseActFuture<Self, Result<SignedIn>>;
    fn handle(&mut self, msg: Login, _: &mut Context<Self>) -> Self::Result {
        let email = match normalize_email(&msg.email) {
            Ok(e) => e,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let permit = match self.check_lockout(&email).and_then(|()| self.hash_permit()) {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let user = self.user_by_email(&email).and_then(|u| Some((u.id.clone(), u.password_hash.clone()?)));
        let hash = user.as_ref().map_or_else(|| self.dummy_hash.clone(), |(_, h)| h.clone());
        let stale = user.as_ref().is_some_and(|(_, h)| hasher::is_stale(h, self.settings.hash));
        let password = stale.then(|| msg.password.clone());
        let check = self.hasher.send(VerifyPassword { hash, password: msg.password });
        Box::pin(check.into_actor(self).map(move |ok, act, ctx| {
            drop(permit);
            let ok = ok?;
            match user {
                Some((id, old_hash)) if ok => {
                    act.failures.remove(&email);
                    let signed = act.signed_in(&id)?;
                    if let Some(password) = password {
                        act.rehash(ctx, id.clone(), old_hash, password);
                    }
                    let op = WriteOp::Internal {
                        sql: "UPDATE _plaza_users SET last_login_at = ? WHERE id = ?",
                        params: vec![SqlValue::Integer(now_ms()), SqlValue::Text(id)],
                    };
                    // Best effort: a lost timestamp is not worth failing a login over.
                    let saved = act.persist(vec![op]);
                    actix::spawn(async move {
                        let _ = saved.await;
                    });
                    Ok(signed)
                }
                _ => {
                    act.record_failure(&email);
                    Err(invalid_login())
                }
            }
        }))
    }
}

impl Accounts {
    /// Re-hashes a password whose stored hash was made with other argon2 parameters (raised in
    /// config), after a successful login: the only moment the password is at hand. Skipped if
    /// the hash changed meanwhile (a password change won).
    fn rehash(&mut self, ctx: &mut Context<Self>, id: String, old_hash: String, password: String) {
        // Busy: the next login will try again.
        let Ok(permit) = self.hash_permit() else { return };
        let (hasher, writer, id2) = (self.hasher.clone(), self.writer.clone(), id.clone());
        let work = async move {
            let new_hash = hasher.send(HashPassword { password }).await;
            drop(permit);
            let new_hash = new_hash??;
            let op = WriteOp::Internal {
                sql: "UPDATE _plaza_users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                params: vec![SqlValue::Text(new_hash.clone()), SqlValue::Text(id2), SqlValue::Text(old_hash.clone())],
            };
            writer.send(Write { auth: AuthContext::admin(), ops: vec![op] }).await??;
            Ok::<_, PlazaError>((old_hash, new_hash))
        };
        ctx.spawn(work.into_actor(self).map(move |r, act, _| match r {
            Ok((old, new)) => {
                if let Some(u) = act.users.get_mut(&id).filter(|u| u.password_hash.as_deref() == Some(old.as_str())) {
                    u.password_hash = Some(new);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not re-hash a password with the current argon2 parameters"),
        }));
    }
}

/// A signed-in user changes their password; the old one must be right (failures count toward
/// the lockout like logins).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct ChangePassword {
    pub user_id: String,
    pub old: String,
    pub new: String,
}

impl Handler<ChangePassword> for Accounts {
    type Result = ResponseActFuture<Self, Result<()>>;
    fn handle(&mut self, msg: ChangePassword, _: &mut Context<Self>) -> Self::Result {
        let Some(user) = self.users.get(&msg.user_id).cloned() else {
            return Box::pin(fut::ready(Err(PlazaError::Forbidden("only accounts have a password".into()))));
        };
        let email = user.email.clone().unwrap_or_default();
        let checked = self.check_lockout(&email).and_then(|()| {
            password::check(&msg.new, Some(&email), self.settings.password_min_chars)?;
            if msg.old == msg.new {
                return Err(PlazaError::Validation("the new password must differ from the old one".into()));
            }
            Ok(())
        });
        let permit = match checked.and_then(|()| self.hash_permit()) {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let hash = user.password_hash.clone().unwrap_or_else(|| self.dummy_hash.clone());
        let has_password = user.password_hash.is_some();
        let (hasher, writer, id) = (self.hasher.clone(), self.writer.clone(), msg.user_id.clone());
        let work = async move {
            let _permit = permit;
            if !(hasher.send(VerifyPassword { hash, password: msg.old }).await? && has_password) {
                return Ok(None);
            }
            let new_hash = hasher.send(HashPassword { password: msg.new }).await??;
            let op = WriteOp::Internal {
                sql: "UPDATE _plaza_users SET password_hash = ? WHERE id = ?",
                params: vec![SqlValue::Text(new_hash.clone()), SqlValue::Text(id)],
            };
            writer.send(Write { auth: AuthContext::admin(), ops: vec![op] }).await??;
            Ok::<_, PlazaError>(Some(new_hash))
        };
        Box::pin(work.into_actor(self).map(move |r, act, _| match r? {
            None => {
                act.record_failure(&email);
                Err(PlazaError::Unauthorized("the current password is wrong".into()))
            }
            Some(h) => {
                if let Some(u) = act.users.get_mut(&msg.user_id) {
                    u.password_hash = Some(h);
                }
                Ok(())
            }
        }))
    }
}

/// A reset code for `email` if it has an account; `None` otherwise. The HTTP layer answers the
/// same either way and delivers the code in the background.
#[derive(Message)]
#[rtype(result = "Result<Option<String>>")]
pub struct RequestReset {
    pub email: String,
}

impl Handler<RequestReset> for Accounts {
    type Result = Result<Option<String>>;
    fn handle(&mut self, msg: RequestReset, _: &mut Context<Self>) -> Result<Option<String>> {
        let email = normalize_email(&msg.email)?;
        let Some(id) = self.by_email.get(&email).cloned() else { return Ok(None) };
        // Over the send limit: silently nothing, as for an unknown address.
        Ok(self.issue_code(CodePurpose::Reset, &email, &id).ok())
    }
}

/// Sets a new password with a reset code. Proves the address, so the account becomes verified.
#[derive(Message)]
#[rtype(result = "Result<SignedIn>")]
pub struct CompleteReset {
    pub email: String,
    pub code: String,
    pub password: String,
}

impl Handler<CompleteReset> for Accounts {
    type Result = ResponseActFuture<Self, Result<SignedIn>>;
    fn handle(&mut self, msg: CompleteReset, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            let email = normalize_email(&msg.email)?;
            password::check(&msg.password, Some(&email), self.settings.password_min_chars)?;
            let permit = self.hash_permit()?;
            let id = self.take_code(CodePurpose::Reset, &email, &msg.code)?;
            Ok((email, id, permit))
        })();
        let (email, id, permit) = match checked {
            Ok(v) => v,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let (hasher, writer, id2) = (self.hasher.clone(), self.writer.clone(), id.clone());
        let work = async move {
            let hash = hasher.send(HashPassword { password: msg.password }).await;
            drop(permit);
            let hash = hash??;
            let op = WriteOp::Internal {
                sql: "UPDATE _plaza_users SET password_hash = ?, verified = 1 WHERE id = ?",
                params: vec![SqlValue::Text(hash.clone()), SqlValue::Text(id2)],
            };
            writer.send(Write { auth: AuthContext::admin(), ops: vec![op] }).await??;
            Ok::<_, PlazaError>(hash)
        };
        Box::pin(work.into_actor(self).map(move |hash, act, _| {
            let hash = hash?;
            let user = act.users.get_mut(&id).ok_or_else(invalid_code)?;
            user.password_hash = Some(hash);
            user.verified = true;
            act.failures.remove(&email);
            act.signed_in(&id)
        }))
    }
}

/// A verification code for the account's email: `(email, code)` to deliver.
#[derive(Message)]
#[rtype(result = "Result<(String, String)>")]
pub struct SendVerification {
    pub user_id: String,
}

impl Handler<SendVerification> for Accounts {
    type Result = Result<(String, String)>;
    fn handle(&mut self, msg: SendVerification, _: &mut Context<Self>) -> Result<(String, String)> {
        let user = self.users.get(&msg.user_id).ok_or_else(|| PlazaError::Forbidden("only accounts have an email to verify".into()))?;
        let email = user.email.clone().ok_or_else(|| PlazaError::Validation("this account has no email address".into()))?;
        if user.verified {
            return Err(PlazaError::Conflict("the email is already verified".into()));
        }
        let code = self.issue_code(CodePurpose::Verify, &msg.user_id, &msg.user_id)?;
        Ok((email, code))
    }
}

/// Confirms the account's email with the code sent to it.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct VerifyEmail {
    pub user_id: String,
    pub code: String,
}

impl Handler<VerifyEmail> for Accounts {
    type Result = ResponseActFuture<Self, Result<()>>;
    fn handle(&mut self, msg: VerifyEmail, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.take_code(CodePurpose::Verify, &msg.user_id, &msg.code) {
            return Box::pin(fut::ready(Err(e)));
        }
        let op = WriteOp::Internal {
            sql: "UPDATE _plaza_users SET verified = 1 WHERE id = ?",
            params: vec![SqlValue::Text(msg.user_id.clone())],
        };
        Box::pin(self.persist(vec![op]).into_actor(self).map(move |r, act, _| {
            r?;
            if let Some(u) = act.users.get_mut(&msg.user_id) {
                u.verified = true;
            }
            Ok(())
        }))
    }
}

/// An account as the admin lists it (Studio): never its password hash or TOTP secret.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserSummary {
    pub id: String,
    pub email: Option<String>,
    pub verified: bool,
    pub has_password: bool,
    pub totp_enabled: bool,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

/// Accounts newest first, a page at a time, optionally those whose email contains `search`.
/// Read on the read threads: this actor writes every change through before it answers, so the
/// table is as current as its memory.
pub fn list_users(conn: &Connection, search: Option<&str>, limit: usize, offset: usize) -> Result<Vec<UserSummary>> {
    let mut stmt = conn.prepare(
        "SELECT id, email, verified, password_hash IS NOT NULL, totp_enabled, created_at, last_login_at FROM _plaza_users \
         WHERE ?1 IS NULL OR instr(email, ?1) > 0 ORDER BY created_at DESC, id LIMIT ?2 OFFSET ?3",
    )?;
    let rows = stmt.query_map(rusqlite::params![search, limit as i64, offset as i64], |r| {
        Ok(UserSummary {
            id: r.get(0)?,
            email: r.get(1)?,
            verified: r.get(2)?,
            has_password: r.get(3)?,
            totp_enabled: r.get(4)?,
            created_at: r.get(5)?,
            last_login_at: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

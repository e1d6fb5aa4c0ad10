//! Sign-in through OAuth2 / OpenID Connect providers, as far as accounts are concerned: the
//! pending sign-ins (state → PKCE verifier, return URL, guest being upgraded; persisted, single
//! use, 10 minutes) and turning a provider's answer (subject, email, email_verified) into an
//! account. An identity is linked to an existing account only when the provider vouches for
//! the email; otherwise a provider cannot take over an account that registered with it.

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;

use super::crypto::sha256;
use super::{now_ms, text, Accounts, SignedIn, User, MAX_PENDING};
use crate::error::{PlazaError, Result};
use crate::sessions::normalize_email;
use crate::store::writer::WriteOp;

/// How long a sign-in may spend at the provider.
pub const STATE_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct PendingSignIn {
    pub provider: String,
    pub pkce_verifier: String,
    pub return_to: String,
    /// The guest that started it: the account takes over its user id.
    pub guest_id: Option<String>,
    pub expires_at_ms: i64,
}

/// Pending sign-ins still valid at start.
pub(crate) fn load_states(conn: &Connection) -> Result<Vec<([u8; 32], PendingSignIn)>> {
    let mut stmt = conn.prepare(
        "SELECT state_hash, provider, pkce_verifier, return_to, guest_id, expires_at FROM _plaza_oauth_states WHERE expires_at > ?",
    )?;
    let rows = stmt.query_map([now_ms()], |r| {
        let hash: Vec<u8> = r.get(0)?;
        Ok((
            hash.try_into().unwrap_or([0; 32]),
            PendingSignIn {
                provider: r.get(1)?,
                pkce_verifier: r.get(2)?,
                return_to: r.get(3)?,
                guest_id: r.get(4)?,
                expires_at_ms: r.get(5)?,
            },
        ))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Remembers a sign-in under way, by its `state` (only the state's SHA-256 is kept).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct SaveSignIn {
    pub state: String,
    pub provider: String,
    pub pkce_verifier: String,
    pub return_to: String,
    pub guest_id: Option<String>,
}

impl Handler<SaveSignIn> for Accounts {
    type Result = ResponseActFuture<Self, Result<()>>;
    fn handle(&mut self, msg: SaveSignIn, _: &mut Context<Self>) -> Self::Result {
        if self.sign_ins.len() >= MAX_PENDING {
            return Box::pin(fut::ready(Err(PlazaError::Unavailable("too many sign-ins under way; retry shortly".into()))));
        }
        let hash = sha256(&[msg.state.as_bytes()]);
        let pending = PendingSignIn {
            provider: msg.provider,
            pkce_verifier: msg.pkce_verifier,
            return_to: msg.return_to,
            guest_id: msg.guest_id,
            expires_at_ms: now_ms() + STATE_TTL.as_millis() as i64,
        };
        let op = WriteOp::Internal {
            sql: "INSERT INTO _plaza_oauth_states (state_hash, provider, pkce_verifier, return_to, guest_id, expires_at) VALUES (?,?,?,?,?,?)",
            params: vec![
                SqlValue::Blob(hash.to_vec()),
                SqlValue::Text(pending.provider.clone()),
                SqlValue::Text(pending.pkce_verifier.clone()),
                SqlValue::Text(pending.return_to.clone()),
                text(&pending.guest_id),
                SqlValue::Integer(pending.expires_at_ms),
            ],
        };
        Box::pin(self.persist(vec![op]).into_actor(self).map(move |r, act, _| {
            r?;
            act.sign_ins.insert(hash, pending);
            Ok(())
        }))
    }
}

/// Takes (and deletes) the sign-in `state` names for `provider`; `None` when unknown, used,
/// expired or for another provider.
#[derive(Message)]
#[rtype(result = "Result<Option<PendingSignIn>>")]
pub struct TakeSignIn {
    pub state: String,
    pub provider: String,
}

impl Handler<TakeSignIn> for Accounts {
    type Result = ResponseActFuture<Self, Result<Option<PendingSignIn>>>;
    fn handle(&mut self, msg: TakeSignIn, _: &mut Context<Self>) -> Self::Result {
        let hash = sha256(&[msg.state.as_bytes()]);
        let Some(pending) = self.sign_ins.remove(&hash) else { return Box::pin(fut::ready(Ok(None))) };
        let op = WriteOp::Internal {
            sql: "DELETE FROM _plaza_oauth_states WHERE state_hash = ?",
            params: vec![SqlValue::Blob(hash.to_vec())],
        };
        let valid = pending.expires_at_ms > now_ms() && pending.provider == msg.provider;
        Box::pin(self.persist(vec![op]).into_actor(self).map(move |r, _, _| {
            r?;
            Ok(valid.then_some(pending))
        }))
    }
}

/// What a provider said about the person signing in.
#[derive(Message)]
#[rtype(result = "Result<SignedIn>")]
pub struct ProviderSignIn {
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub guest_id: Option<String>,
}

impl Handler<ProviderSignIn> for Accounts {
    type Result = ResponseActFuture<Self, Result<SignedIn>>;
    fn handle(&mut self, msg: ProviderSignIn, _: &mut Context<Self>) -> Self::Result {
        let key = (msg.provider.clone(), msg.subject.clone());
        if let Some(user_id) = self.identities.get(&key).cloned() {
            return Box::pin(fut::ready(self.signed_in(&user_id)));
        }
        let decided = self.decide(&msg);
        let (user_id, new_user, verify_existing) = match decided {
            Ok(d) => d,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let reservation = format!("idp:{}:{}", msg.provider, msg.subject);
        if self.reserved.contains(&reservation) {
            return Box::pin(fut::ready(Err(PlazaError::Conflict("this sign-in is already being completed".into()))));
        }
        let mut reserved: HashSet<String> = [reservation].into();
        let mut ops = Vec::new();
        let now = now_ms();
        if let Some(u) = &new_user {
            reserved.insert(u.id.clone());
            if let Some(e) = &u.email {
                reserved.insert(e.clone());
            }
            ops.push(WriteOp::Internal {
                sql: "INSERT INTO _plaza_users (id, email, password_hash, verified, created_at, last_login_at) VALUES (?,?,NULL,?,?,?)",
                params: vec![
                    SqlValue::Text(u.id.clone()),
                    text(&u.email),
                    SqlValue::Integer(u.verified as i64),
                    SqlValue::Integer(now),
                    SqlValue::Integer(now),
                ],
            });
        }
        if verify_existing {
            ops.push(WriteOp::Internal {
                sql: "UPDATE _plaza_users SET verified = 1 WHERE id = ?",
                params: vec![SqlValue::Text(user_id.clone())],
            });
        }
        ops.push(WriteOp::Internal {
            sql: "INSERT INTO _plaza_identities (provider, subject, user_id, email, created_at) VALUES (?,?,?,?,?)",
            params: vec![
                SqlValue::Text(msg.provider.clone()),
                SqlValue::Text(msg.subject.clone()),
                SqlValue::Text(user_id.clone()),
                text(&msg.email),
                SqlValue::Integer(now),
            ],
        });
        self.reserved.extend(reserved.iter().cloned());
        Box::pin(self.persist(ops).into_actor(self).map(move |r, act, _| {
            for r in &reserved {
                act.reserved.remove(r);
            }
            r?;
            if let Some(u) = new_user {
                act.add_user(u);
            }
            if verify_existing {
                if let Some(u) = act.users.get_mut(&user_id) {
                    u.verified = true;
                }
            }
            act.identities.insert(key, user_id.clone());
            act.signed_in(&user_id)
        }))
    }
}

impl Accounts {
    /// Which account a new identity belongs to: (user id, the user to create if new, whether an
    /// existing account's email just became verified).
    fn decide(&self, msg: &ProviderSignIn) -> Result<(String, Option<User>, bool)> {
        let email = msg.email.as_deref().and_then(|e| normalize_email(e).ok());
        let existing = email.as_deref().and_then(|e| self.user_by_email(e)).map(|u| (u.id.clone(), u.verified));
        let taken = |e: &String| self.reserved.contains(e);
        match (&msg.guest_id, existing) {
            (Some(_), Some(_)) => Err(PlazaError::Conflict(
                "an account with this email already exists; sign in to it instead of upgrading the guest".into(),
            )),
            (None, Some((id, verified))) if msg.email_verified => Ok((id, None, !verified)),
            (None, Some(_)) => Err(PlazaError::Conflict(
                "an account with this email exists, and the provider did not confirm the address: sign in with the password and link the provider from there".into(),
            )),
            (guest, None) => {
                if let Some(g) = guest {
                    if self.users.contains_key(g) || self.reserved.contains(g) {
                        return Err(PlazaError::Conflict("this guest is already an account".into()));
                    }
                }
                // Only a confirmed address is recorded: an unconfirmed one could squat someone's email.
                let email = email.filter(|e| msg.email_verified && !taken(e));
                let id = guest.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
                let user = User {
                    id: id.clone(),
                    email,
                    password_hash: None,
                    verified: msg.email_verified && msg.email.is_some(),
                    totp_secret: None,
                    totp_enabled: false,
                    backup_codes: HashSet::new(),
                    last_totp_step: 0,
                };
                Ok((id, Some(user), false))
            }
        }
    }
}

//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s, one step of skew). The secret is sealed
//! with the accounts key before it is stored; a code is accepted once (its time step must be
//! newer than the last one accepted, which is stored, so a restart does not reopen it), and ten
//! single-use backup codes are kept as SHA-256.

use actix::prelude::*;
use rusqlite::types::Value as SqlValue;
use totp_rs::{Algorithm, TOTP};

use super::crypto::{self, backup_code_hash, sha256};
use super::{now_ms, Accounts, SignedIn, User};
use crate::error::{PlazaError, Result};
use crate::store::writer::WriteOp;

pub const TOTP_DIGITS: usize = 6;
pub const TOTP_STEP_SECS: u64 = 30;
pub const SECRET_BYTES: usize = 20;
pub const BACKUP_CODES: usize = 10;
/// Wrong codes one pending sign-in may take before it has to start over.
pub const MFA_ATTEMPTS: u32 = 5;

fn wrong_code() -> PlazaError {
    PlazaError::Unauthorized("invalid code".into())
}

fn totp(secret: Vec<u8>, issuer: &str, account: &str) -> Result<TOTP> {
    let clean = |s: &str| s.replace(':', "_");
    TOTP::new(Algorithm::SHA1, TOTP_DIGITS, 1, TOTP_STEP_SECS, secret, Some(clean(issuer)), clean(account))
        .map_err(|e| PlazaError::Internal(format!("totp: {e}")))
}

/// Which second factor a code was.
enum Factor {
    Totp,
    Backup([u8; 32]),
}

impl Accounts {
    fn secrets(&self) -> Result<&crypto::SecretBox> {
        self.secrets.as_ref().ok_or_else(|| {
            PlazaError::Unavailable("TOTP is not available: the server has no PLAZA_ACCOUNTS_KEY to encrypt secrets with".into())
        })
    }

    /// Checks a TOTP code (any user with a secret, enabled or pending) and moves the replay
    /// mark; or, with `backups`, a backup code (not yet consumed: the caller persists that).
    fn check_factor(&mut self, user_id: &str, code: &str, backups: bool) -> Result<Factor> {
        let secrets = self.secrets()?.clone();
        let user = self.users.get_mut(user_id).ok_or_else(wrong_code)?;
        let sealed = user.totp_secret.clone().ok_or_else(|| PlazaError::Conflict("TOTP is not enrolled".into()))?;
        let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
        if code.len() == TOTP_DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
            let t = totp(secrets.open(&sealed, &user.id)?, "", "")?;
            let now_step = (now_ms().max(0) as u64 / 1000) / TOTP_STEP_SECS;
            for step in [now_step.saturating_sub(1), now_step, now_step + 1] {
                let expected = t.generate(step * TOTP_STEP_SECS);
                if step > user.last_totp_step && constant_time_eq::constant_time_eq(expected.as_bytes(), code.as_bytes()) {
                    user.last_totp_step = step;
                    return Ok(Factor::Totp);
                }
            }
            return Err(wrong_code());
        }
        let hash = backup_code_hash(&code);
        if backups && user.totp_enabled && user.backup_codes.contains(&hash) {
            return Ok(Factor::Backup(hash));
        }
        Err(wrong_code())
    }

    /// Spends a factor: a backup code is gone from memory now (a concurrent second use finds
    /// it gone already), a TOTP step is marked used; the op writes that before anyone is answered.
    fn consume(&mut self, user_id: &str, factor: &Factor) -> WriteOp {
        let user = SqlValue::Text(user_id.to_string());
        match factor {
            Factor::Backup(hash) => {
                if let Some(u) = self.users.get_mut(user_id) {
                    u.backup_codes.remove(hash);
                }
                WriteOp::Internal {
                    sql: "DELETE FROM _plaza_backup_codes WHERE user_id = ? AND code_hash = ?",
                    params: vec![user, SqlValue::Blob(hash.to_vec())],
                }
            }
            Factor::Totp => {
                let step = self.users.get(user_id).map_or(0, |u| u.last_totp_step);
                WriteOp::Internal {
                    sql: "UPDATE _plaza_users SET totp_last_step = ? WHERE id = ?",
                    params: vec![SqlValue::Integer(step.min(i64::MAX as u64) as i64), user],
                }
            }
        }
    }
}

/// A new (pending) TOTP secret for the account: enabled once `ConfirmTotp` sees a code from it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TotpEnrollment {
    /// Base32, for typing into an authenticator by hand.
    pub secret: String,
    pub otpauth_uri: String,
}

#[derive(Message)]
#[rtype(result = "Result<TotpEnrollment>")]
pub struct EnrollTotp {
    pub user_id: String,
}

impl Handler<EnrollTotp> for Accounts {
    type Result = ResponseActFuture<Self, Result<TotpEnrollment>>;
    fn handle(&mut self, msg: EnrollTotp, _: &mut Context<Self>) -> Self::Result {
        let prepared = (|| {
            let secrets = self.secrets()?;
            let user: &User = self.users.get(&msg.user_id).ok_or_else(|| PlazaError::Forbidden("only accounts can enable TOTP".into()))?;
            if user.totp_enabled {
                return Err(PlazaError::Conflict("TOTP is already on; disable it first".into()));
            }
            let raw = crypto::random::<SECRET_BYTES>()?.to_vec();
            let sealed = secrets.seal(&raw, &user.id)?;
            let t = totp(raw, &self.settings.totp_issuer, user.email.as_deref().unwrap_or(&user.id))?;
            Ok((sealed, TotpEnrollment { secret: t.get_secret_base32(), otpauth_uri: t.get_url() }))
        })();
        let (sealed, enrollment) = match prepared {
            Ok(p) => p,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let op = WriteOp::Internal {
            sql: "UPDATE _plaza_users SET totp_secret = ?, totp_enabled = 0 WHERE id = ?",
            params: vec![SqlValue::Blob(sealed.clone()), SqlValue::Text(msg.user_id.clone())],
        };
        Box::pin(self.persist(vec![op]).into_actor(self).map(move |r, act, _| {
            r?;
            if let Some(u) = act.users.get_mut(&msg.user_id) {
                u.totp_secret = Some(sealed);
                u.totp_enabled = false;
            }
            Ok(enrollment)
        }))
    }
}

/// Turns TOTP on with a first code from the enrolled secret; answers fresh backup codes
/// (shown once; any earlier ones are void).
#[derive(Message)]
#[rtype(result = "Result<Vec<String>>")]
pub struct ConfirmTotp {
    pub user_id: String,
    pub code: String,
}

impl Handler<ConfirmTotp> for Accounts {
    type Result = ResponseActFuture<Self, Result<Vec<String>>>;
    fn handle(&mut self, msg: ConfirmTotp, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            if self.users.get(&msg.user_id).is_some_and(|u| u.totp_enabled) {
                return Err(PlazaError::Conflict("TOTP is already on".into()));
            }
            let factor = self.check_factor(&msg.user_id, &msg.code, false)?;
            let spent = self.consume(&msg.user_id, &factor);
            Ok((spent, (0..BACKUP_CODES).map(|_| crypto::backup_code()).collect::<Result<Vec<_>>>()?))
        })();
        let (spent, codes) = match checked {
            Ok(c) => c,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let id = || SqlValue::Text(msg.user_id.clone());
        let mut ops = vec![
            spent,
            WriteOp::Internal { sql: "UPDATE _plaza_users SET totp_enabled = 1 WHERE id = ?", params: vec![id()] },
            WriteOp::Internal { sql: "DELETE FROM _plaza_backup_codes WHERE user_id = ?", params: vec![id()] },
        ];
        let hashes: Vec<[u8; 32]> = codes.iter().map(|c| backup_code_hash(c)).collect();
        for h in &hashes {
            ops.push(WriteOp::Internal {
                sql: "INSERT INTO _plaza_backup_codes (user_id, code_hash) VALUES (?, ?)",
                params: vec![id(), SqlValue::Blob(h.to_vec())],
            });
        }
        Box::pin(self.persist(ops).into_actor(self).map(move |r, act, _| {
            r?;
            if let Some(u) = act.users.get_mut(&msg.user_id) {
                u.totp_enabled = true;
                u.backup_codes = hashes.into_iter().collect();
            }
            Ok(codes)
        }))
    }
}

/// Turns TOTP off; needs a current TOTP code or a backup code.
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct DisableTotp {
    pub user_id: String,
    pub code: String,
}

impl Handler<DisableTotp> for Accounts {
    type Result = ResponseActFuture<Self, Result<()>>;
    fn handle(&mut self, msg: DisableTotp, _: &mut Context<Self>) -> Self::Result {
        if !self.users.get(&msg.user_id).is_some_and(|u| u.totp_enabled) {
            return Box::pin(fut::ready(Err(PlazaError::Conflict("TOTP is not on".into()))));
        }
        let factor = match self.check_factor(&msg.user_id, &msg.code, true) {
            Ok(f) => f,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        // The step stays marked: a code used to disable cannot sign in after a re-enrolment.
        let spent = self.consume(&msg.user_id, &factor);
        let id = || SqlValue::Text(msg.user_id.clone());
        let ops = vec![
            spent,
            WriteOp::Internal { sql: "UPDATE _plaza_users SET totp_secret = NULL, totp_enabled = 0 WHERE id = ?", params: vec![id()] },
            WriteOp::Internal { sql: "DELETE FROM _plaza_backup_codes WHERE user_id = ?", params: vec![id()] },
        ];
        Box::pin(self.persist(ops).into_actor(self).map(move |r, act, _| {
            r?;
            if let Some(u) = act.users.get_mut(&msg.user_id) {
                u.totp_secret = None;
                u.totp_enabled = false;
                u.backup_codes.clear();
            }
            Ok(())
        }))
    }
}

/// The second step of a sign-in: the `mfa_token` from login and a TOTP or backup code.
#[derive(Message)]
#[rtype(result = "Result<SignedIn>")]
pub struct CompleteMfa {
    pub mfa_token: String,
    pub code: String,
}

impl Handler<CompleteMfa> for Accounts {
    type Result = ResponseActFuture<Self, Result<SignedIn>>;
    fn handle(&mut self, msg: CompleteMfa, _: &mut Context<Self>) -> Self::Result {
        let key = sha256(&[msg.mfa_token.as_bytes()]);
        let expired = || PlazaError::Unauthorized("invalid or expired sign-in; log in again".into());
        let Some(pending) = self.mfa.get(&key) else { return Box::pin(fut::ready(Err(expired()))) };
        if pending.expires_at_ms <= now_ms() || pending.attempts >= MFA_ATTEMPTS {
            self.mfa.remove(&key);
            return Box::pin(fut::ready(Err(expired())));
        }
        let user_id = pending.user_id.clone();
        let factor = match self.check_factor(&user_id, &msg.code, true) {
            Ok(f) => f,
            Err(e) => {
                if let Some(p) = self.mfa.get_mut(&key) {
                    p.attempts += 1;
                    if p.attempts >= MFA_ATTEMPTS {
                        self.mfa.remove(&key);
                    }
                }
                return Box::pin(fut::ready(Err(e)));
            }
        };
        self.mfa.remove(&key);
        let verified = self.users.get(&user_id).is_some_and(|u| u.verified);
        let signed = SignedIn { user_id: user_id.clone(), verified, mfa_token: None };
        let op = self.consume(&user_id, &factor);
        Box::pin(self.persist(vec![op]).into_actor(self).map(move |r, _, _| r.map(|()| signed)))
    }
}

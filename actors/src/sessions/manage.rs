//! What accounts ask of the SessionStore beyond sign-in: sessions for an account (with where
//! they came from), the caller's session list and revocation by id, ending all of a user's
//! sessions (password change, reset, guest upgrade), API keys, and the verified flag; and, for
//! the admin (Studio), every session and revocation of any of them.

use std::sync::Arc;

use actix::prelude::*;
use rusqlite::types::Value as SqlValue;
use serde::Serialize;

use super::{now_ms, public_id, rfc3339, IssuedSession, KeyInfo, Session, SessionMeta, SessionStore};
use crate::error::{PlazaError, Result};
use crate::store::writer::WriteOp;
use crate::streams::SessionsEnded;

/// A sign-in session for an account. `verified` records the account's email state for
/// `auth.verified` (only ever turns it on; `SetVerified` is the other way in).
#[derive(Message)]
#[rtype(result = "Result<IssuedSession>")]
pub struct Issue {
    pub user_id: String,
    pub verified: bool,
    pub meta: SessionMeta,
}

impl Handler<Issue> for SessionStore {
    type Result = ResponseActFuture<Self, Result<IssuedSession>>;
    fn handle(&mut self, msg: Issue, _: &mut Context<Self>) -> Self::Result {
        if msg.verified {
            self.verified.insert(msg.user_id.clone());
        }
        self.issue_with(msg.user_id, false, msg.meta, None)
    }
}

/// The account's email is now confirmed: its sessions carry `auth.verified` from the next
/// request on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetVerified {
    pub user_id: String,
}

impl Handler<SetVerified> for SessionStore {
    type Result = ();
    fn handle(&mut self, msg: SetVerified, _: &mut Context<Self>) {
        self.verified.insert(msg.user_id);
    }
}

/// Which of a user's credentials `EndUserSessions` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Sign-in sessions only (API keys stay).
    Sessions,
    /// Sessions and API keys.
    Everything,
    /// Guest sessions only (the guest became an account).
    Guests,
}

/// Ends a user's sessions except `keep` (the caller's own); answers how many ended. Rows are
/// deleted before answering and open streams are told.
#[derive(Message)]
#[rtype(result = "Result<usize>")]
pub struct EndUserSessions {
    pub user_id: String,
    pub keep: Option<Arc<str>>,
    pub ending: Ending,
}

impl Handler<EndUserSessions> for SessionStore {
    type Result = ResponseActFuture<Self, Result<usize>>;
    fn handle(&mut self, msg: EndUserSessions, _: &mut Context<Self>) -> Self::Result {
        let selectors: Vec<String> = self
            .by_user
            .get(&msg.user_id)
            .map(|set| {
                set.iter()
                    .filter(|sel| msg.keep.as_deref() != Some(sel.as_str()))
                    .filter(|sel| {
                        self.sessions.get(*sel).is_some_and(|s| match msg.ending {
                            Ending::Sessions => s.key.is_none(),
                            Ending::Everything => true,
                            Ending::Guests => s.guest,
                        })
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(self.end(selectors))
    }
}

impl SessionStore {
    /// Forgets `selectors`, tells their streams, deletes their rows; answers after the commit.
    fn end(&mut self, selectors: Vec<String>) -> impl ActorFuture<Self, Output = Result<usize>> {
        for sel in &selectors {
            self.forget(sel);
        }
        let n = selectors.len();
        self.ended.do_send(SessionsEnded { sessions: selectors.iter().map(|s| s.as_str().into()).collect() });
        let ops = selectors
            .into_iter()
            .map(|sel| WriteOp::Internal { sql: "DELETE FROM _plaza_sessions WHERE selector = ?", params: vec![SqlValue::Text(sel)] })
            .collect::<Vec<_>>();
        let saved = if ops.is_empty() { None } else { Some(self.persist(ops)) };
        async move {
            if let Some(saved) = saved {
                saved.await?;
            }
            Ok(n)
        }
        .into_actor(self)
    }
}

/// One entry of the caller's session or API-key list.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub id: String,
    pub created_at: String,
    pub last_used_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// API keys: their name and scope (`read` or `read_write`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
    /// The session this request came with.
    pub current: bool,
}

/// The user's sign-in sessions (`keys: false`) or API keys (`keys: true`), newest first.
#[derive(Message)]
#[rtype(result = "Vec<SessionInfo>")]
pub struct ListSessions {
    pub user_id: String,
    pub current: Option<Arc<str>>,
    pub keys: bool,
}

impl Handler<ListSessions> for SessionStore {
    type Result = MessageResult<ListSessions>;
    fn handle(&mut self, msg: ListSessions, _: &mut Context<Self>) -> Self::Result {
        let mut list: Vec<(i64, SessionInfo)> = self
            .by_user
            .get(&msg.user_id)
            .into_iter()
            .flatten()
            .filter_map(|sel| self.sessions.get(sel).map(|s| (sel, s)))
            .filter(|(_, s)| s.key.is_some() == msg.keys)
            .map(|(sel, s)| {
                let info = session_info(sel, s, msg.current.as_deref() == Some(sel.as_str()));
                (s.created_ms, info)
            })
            .collect();
        list.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        MessageResult(list.into_iter().map(|(_, i)| i).collect())
    }
}

/// Revokes one of the user's sessions (`keys: false`) or API keys by its listed id; answers
/// whether there was one. Another user's id is "not there".
#[derive(Message)]
#[rtype(result = "Result<bool>")]
pub struct RevokeById {
    pub user_id: String,
    pub id: String,
    pub keys: bool,
}

impl Handler<RevokeById> for SessionStore {
    type Result = ResponseActFuture<Self, Result<bool>>;
    fn handle(&mut self, msg: RevokeById, _: &mut Context<Self>) -> Self::Result {
        let found = self.by_user.get(&msg.user_id).and_then(|set| {
            set.iter()
                .find(|sel| {
                    public_id(sel) == msg.id && self.sessions.get(*sel).is_some_and(|s| s.key.is_some() == msg.keys)
                })
                .cloned()
        });
        match found {
            None => Box::pin(fut::ready(Ok(false))),
            Some(sel) => Box::pin(self.end(vec![sel]).map(|r, _, _| r.map(|n| n > 0))),
        }
    }
}

/// A new API key for the user; the token is in the answer and nowhere else.
#[derive(Message)]
#[rtype(result = "Result<(IssuedSession, SessionInfo)>")]
pub struct IssueApiKey {
    pub user_id: String,
    pub name: String,
    pub read_only: bool,
    /// Most keys one user may hold.
    pub max_keys: usize,
}

impl Handler<IssueApiKey> for SessionStore {
    type Result = ResponseActFuture<Self, Result<(IssuedSession, SessionInfo)>>;
    fn handle(&mut self, msg: IssueApiKey, _: &mut Context<Self>) -> Self::Result {
        let held = self
            .by_user
            .get(&msg.user_id)
            .map_or(0, |set| set.iter().filter(|sel| self.sessions.get(*sel).is_some_and(|s| s.key.is_some())).count());
        if held >= msg.max_keys {
            let e = PlazaError::Conflict(format!("at most {} API keys per account; delete one first", msg.max_keys));
            return Box::pin(fut::ready(Err(e)));
        }
        let key = KeyInfo { name: msg.name.clone(), read_only: msg.read_only };
        let now = now_ms();
        Box::pin(self.issue_with(msg.user_id, false, SessionMeta::default(), Some(key)).map(move |issued, _, _| {
            let issued = issued?;
            let info = SessionInfo {
                id: issued.id.clone(),
                created_at: rfc3339(now),
                last_used_at: rfc3339(now),
                expires_at: None,
                user_agent: None,
                ip: None,
                name: Some(msg.name),
                scope: Some(if msg.read_only { "read" } else { "read_write" }),
                current: false,
            };
            Ok((issued, info))
        }))
    }
}

/// A session or API key as the admin sees it: whose it is, besides what its owner sees.
#[derive(Debug, Clone, Serialize)]
pub struct AdminSessionInfo {
    pub user_id: String,
    pub guest: bool,
    /// `session` or `api_key`.
    pub kind: &'static str,
    #[serde(flatten)]
    pub info: SessionInfo,
}

/// Every session and API key (of `user_id`, when given), newest first, at most `limit`;
/// answers them and how many there are in all.
#[derive(Message)]
#[rtype(result = "(Vec<AdminSessionInfo>, usize)")]
pub struct ListAll {
    pub user_id: Option<String>,
    pub limit: usize,
}

impl Handler<ListAll> for SessionStore {
    type Result = MessageResult<ListAll>;
    fn handle(&mut self, msg: ListAll, _: &mut Context<Self>) -> Self::Result {
        let mut list: Vec<(i64, &String, &super::Session)> = self
            .sessions
            .iter()
            .filter(|(_, s)| msg.user_id.as_deref().is_none_or(|u| u == s.user_id))
            .map(|(sel, s)| (s.created_ms, sel, s))
            .collect();
        let total = list.len();
        list.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        let page = list
            .into_iter()
            .take(msg.limit)
            .map(|(_, sel, s)| AdminSessionInfo {
                user_id: s.user_id.clone(),
                guest: s.guest,
                kind: if s.key.is_some() { "api_key" } else { "session" },
                info: session_info(sel, s, false),
            })
            .collect();
        MessageResult((page, total))
    }
}

/// Revokes any user's session or API key by its listed id (the admin); answers whether there
/// was one. Its streams close as for any revocation.
#[derive(Message)]
#[rtype(result = "Result<bool>")]
pub struct RevokeAny {
    pub id: String,
}

impl Handler<RevokeAny> for SessionStore {
    type Result = ResponseActFuture<Self, Result<bool>>;
    fn handle(&mut self, msg: RevokeAny, _: &mut Context<Self>) -> Self::Result {
        match self.sessions.keys().find(|sel| public_id(sel) == msg.id).cloned() {
            None => Box::pin(fut::ready(Ok(false))),
            Some(sel) => Box::pin(self.end(vec![sel]).map(|r, _, _| r.map(|n| n > 0))),
        }
    }
}

/// What a session or API key shows of itself in listings (never its token).
fn session_info(selector: &str, s: &Session, current: bool) -> SessionInfo {
    SessionInfo {
        id: public_id(selector),
        created_at: rfc3339(s.created_ms),
        last_used_at: rfc3339(s.last_used_ms),
        expires_at: s.key.is_none().then(|| rfc3339(s.expires_at_ms)),
        user_agent: s.meta.user_agent.clone(),
        ip: s.meta.ip.clone(),
        name: s.key.as_ref().map(|k| k.name.clone()),
        scope: s.key.as_ref().map(|k| if k.read_only { "read" } else { "read_write" }),
        current,
    }
}

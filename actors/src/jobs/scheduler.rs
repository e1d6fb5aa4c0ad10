//! The `Scheduler` actor: cron entries (six fields with seconds, UTC) that enqueue jobs.
//!
//! Each entry's last fire time is stored in `_plaza_cron`, committed in the same transaction as
//! the job it enqueued, so a fire is never lost or doubled by a crash. On start and whenever
//! its timer fires the Scheduler looks at the clock: an entry whose next fire time has passed
//! fires once, for the latest time that passed — a fire time missed while the process was down
//! fires once on start, never twice, however many were missed. An entry seen for the first time
//! starts counting from now.
//!
//! Messages: `Check` (fire what is due; the timer sends it, tests with an injected clock too).

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use serde_json::Value;

use super::queue::{Enqueue, JobQueue};
use crate::clock::SharedClock;
use crate::error::{PlazaError, Result};
use crate::model::manifest::{parse_cron, JobDef};
use crate::store::writer::{Write, WriteOp, Writer};

/// Built-in schedules; a manifest `jobs` entry with the same name replaces one (without a
/// `cron` it turns it off).
pub const DEFAULT_SCHEDULE: &[(&str, &str)] = &[("changelog_compact", "0 17 * * * *"), ("sessions_cleanup", "0 */15 * * * *")];
/// Longest the Scheduler sleeps before looking at the clock again.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

struct Entry {
    name: String,
    schedule: cron::Schedule,
    payload: Value,
    /// Milliseconds since the epoch of the last fire (or of the first time it was seen).
    last: Option<i64>,
}

pub struct Scheduler {
    entries: Vec<Entry>,
    queue: Addr<JobQueue>,
    writer: Addr<Writer>,
    clock: SharedClock,
    timer: Option<SpawnHandle>,
}

fn at(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// The manifest's entries over the built-in ones.
pub fn entries(defs: &[JobDef]) -> Vec<(String, String, Value)> {
    let mut out: Vec<(String, String, Value)> = DEFAULT_SCHEDULE
        .iter()
        .filter(|(name, _)| !defs.iter().any(|d| d.name == *name))
        .map(|(name, cron)| (name.to_string(), cron.to_string(), Value::Null))
        .collect();
    for d in defs {
        if let Some(cron) = &d.cron {
            out.push((d.name.clone(), cron.clone(), d.payload.clone().unwrap_or(Value::Null)));
        }
    }
    out
}

/// A cron entry as Studio shows it: its expression, payload, last and next fire (RFC 3339).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CronEntry {
    pub name: String,
    pub cron: String,
    pub payload: Value,
    pub last_fire: Option<String>,
    pub next_fire: Option<String>,
}

/// Every cron entry (built-in and manifest) with its stored last fire and its next fire after
/// `now_ms`. Read on the read threads from `_plaza_cron`, which each fire updates.
pub fn schedule(conn: &Connection, defs: &[JobDef], now_ms: i64) -> Result<Vec<CronEntry>> {
    use rusqlite::OptionalExtension;
    let mut stmt = conn.prepare("SELECT last_fire FROM _plaza_cron WHERE name = ?")?;
    entries(defs)
        .into_iter()
        .map(|(name, cron, payload)| {
            let last = stmt.query_row([&name], |r| r.get::<_, i64>(0)).optional()?;
            let next = parse_cron(&cron)?.after(&at(now_ms)).next();
            Ok(CronEntry {
                last_fire: last.map(|ms| at(ms).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                next_fire: next.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                name,
                cron,
                payload,
            })
        })
        .collect()
}

impl Scheduler {
    /// Reads the stored fire times. Runs once at start, before serving.
    pub fn load(conn: &Connection, defs: &[JobDef], queue: Addr<JobQueue>, writer: Addr<Writer>, clock: SharedClock) -> Result<Scheduler> {
        let mut last: HashMap<String, i64> = HashMap::new();
        let mut stmt = conn.prepare("SELECT name, last_fire FROM _plaza_cron")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (name, t) = row?;
            last.insert(name, t);
        }
        let mut list = Vec::new();
        for (name, cron, payload) in entries(defs) {
            let schedule = parse_cron(&cron)?;
            let last = last.get(&name).copied();
            list.push(Entry { name, schedule, payload, last });
        }
        Ok(Scheduler { entries: list, queue, writer, clock, timer: None })
    }

    fn record(name: &str, fire: i64) -> WriteOp {
        WriteOp::Internal {
            sql: "INSERT INTO _plaza_cron (name, last_fire) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET last_fire = excluded.last_fire",
            params: vec![SqlValue::Text(name.to_string()), SqlValue::Integer(fire)],
        }
    }

    /// Fires every entry that is due; answers (name, fire time) of each enqueued job.
    fn check(&mut self, ctx: &mut Context<Self>) -> ResponseActFuture<Self, Vec<(String, i64)>> {
        let now = self.clock.now_ms();
        let mut fires = Vec::new();
        for (i, e) in self.entries.iter_mut().enumerate() {
            let Some(last) = e.last else {
                // First sight: count from now, and remember that, so a time missed while the
                // process is down later still fires.
                e.last = Some(now);
                fires.push((i, None, Scheduler::record(&e.name, now)));
                continue;
            };
            // The latest fire time at or before now, if it is after the last fire.
            let latest = e.schedule.after(&at(now + 1)).next_back().map(|t| t.timestamp_millis());
            if let Some(fire) = latest.filter(|&f| f > last) {
                e.last = Some(fire);
                fires.push((i, Some((last, fire)), Scheduler::record(&e.name, fire)));
            }
        }
        let mut pending = Vec::new();
        for (i, fire, record) in fires {
            let e = &self.entries[i];
            match fire {
                None => self.writer.do_send(Write { auth: super::job_writer(), ops: vec![record] }),
                Some((previous, fire)) => {
                    let enqueue = Enqueue {
                        name: e.name.clone(),
                        payload: e.payload.clone(),
                        created_by: "cron".into(),
                        also: vec![record],
                        ..Enqueue::default()
                    };
                    pending.push((i, previous, fire, self.queue.send(enqueue)));
                }
            }
        }
        self.arm(now, ctx);
        Box::pin(
            async move {
                let mut out = Vec::new();
                for (i, previous, fire, sent) in pending {
                    out.push((i, previous, fire, sent.await.map_err(PlazaError::from).and_then(|r| r)));
                }
                out
            }
            .into_actor(self)
            .map(|results, act, _| {
                let mut fired = Vec::new();
                for (i, previous, fire, result) in results {
                    let name = act.entries[i].name.clone();
                    match result {
                        Ok(job) => {
                            tracing::info!(name = %name, job = %job.id, fire = %at(fire), "cron fired");
                            fired.push((name, fire));
                        }
                        Err(e) => {
                            // Not recorded: the next check tries again.
                            tracing::error!(name = %name, error = %e, "cron could not enqueue its job");
                            if act.entries[i].last == Some(fire) {
                                act.entries[i].last = Some(previous);
                            }
                        }
                    }
                }
                fired
            }),
        )
    }

    /// Sleeps until the soonest next fire time.
    fn arm(&mut self, now: i64, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        let next = self.entries.iter().filter_map(|e| e.schedule.after(&at(now)).next()).map(|t| t.timestamp_millis()).min();
        if let Some(next) = next {
            let delay = Duration::from_millis((next - now).max(1) as u64).min(MAX_SLEEP);
            self.timer = Some(ctx.run_later(delay, |act, ctx| {
                act.timer = None;
                let due = act.check(ctx);
                ctx.spawn(due.map(|_, _, _| ()));
            }));
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Nothing else is handled until the fires due at start are enqueued.
        let first = self.check(ctx);
        ctx.wait(first.map(|_, _, _| ()));
    }
}

/// Fires what is due now; answers (entry name, fire time in ms) for each job enqueued.
#[derive(Message)]
#[rtype(result = "Vec<(String, i64)>")]
pub struct Check;

impl Handler<Check> for Scheduler {
    type Result = ResponseActFuture<Self, Vec<(String, i64)>>;
    fn handle(&mut self, _: Check, ctx: &mut Context<Self>) -> Self::Result {
        self.check(ctx)
    }
}

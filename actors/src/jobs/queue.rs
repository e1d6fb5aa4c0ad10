//! The `JobQueue` actor: every pending and running job, in memory and in `_plaza_jobs`.
//!
//! Due jobs run highest `priority` first, then by `run_at`, then in order of arrival; at most one
//! attempt per worker thread is in flight. Each state change is written through the Writer
//! (under a client of its own, so in order); a job is acknowledged to its creator only once it
//! is committed. A finished job leaves memory once its final state is committed, after which
//! it is read from the database. At start every job that was `running` is `pending` again: the
//! process died while it ran, so it runs again (that interrupted attempt is not counted).
//!
//! Messages: `Enqueue`, `Get`, `List`, `Retry`, `Wake`, `Drain`, `Stats`.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::Value;

use super::worker::{JobWorker, Run};
use super::*;
use crate::clock::SharedClock;
use crate::store::writer::{Write, WriteOp, Writer};

/// Failed attempts kept on a job (a retried job keeps its history, up to this).
pub const MAX_ERRORS_KEPT: usize = 100;
/// Longest the queue sleeps before looking at the clock again.
const MAX_TIMER: Duration = Duration::from_secs(60);

struct Attempt {
    attempt: u32,
    started: Instant,
    timeout: SpawnHandle,
}

pub struct JobQueue {
    jobs: HashMap<String, Job>,
    /// Pending jobs not yet due: (run_at, arrival, id).
    waiting: BTreeSet<(i64, u64, String)>,
    /// Pending jobs that are due: highest priority first, then run_at, then arrival.
    ready: BTreeSet<(Reverse<i64>, i64, u64, String)>,
    running: HashMap<String, Attempt>,
    /// Worker threads busy, counting attempts that timed out but have not returned yet.
    busy: usize,
    arrivals: u64,
    timer: Option<(i64, SpawnHandle)>,
    pool: Addr<JobWorker>,
    writer: Addr<Writer>,
    clock: SharedClock,
    settings: JobSettings,
    /// Jobs found running at start, saved as pending again once the actor runs.
    recovered: Vec<Job>,
    /// Set on SIGTERM: no new attempt starts; running ones finish or run again after restart.
    draining: bool,
}

/// The delay before retry `attempt + 1`: `base * 2^(attempt-1)`, capped, with "equal jitter"
/// (half fixed, half random), so delays grow from one attempt to the next yet retries from many
/// jobs that failed together spread out.
pub fn backoff_ms(base: u64, attempt: u32) -> u64 {
    let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(40)).clamp(1, MAX_BACKOFF_MS);
    let half = exp / 2;
    let mut r = [0u8; 8];
    let random = getrandom::fill(&mut r).map(|()| u64::from_le_bytes(r)).unwrap_or(0);
    exp - half + random % (half + 1)
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

impl JobQueue {
    /// `unfinished` comes from [`load_unfinished`] at start.
    pub fn new(unfinished: Vec<Job>, pool: Addr<JobWorker>, writer: Addr<Writer>, clock: SharedClock, settings: JobSettings) -> JobQueue {
        let now = clock.now_ms();
        let mut q = JobQueue {
            jobs: HashMap::new(),
            waiting: BTreeSet::new(),
            ready: BTreeSet::new(),
            running: HashMap::new(),
            busy: 0,
            arrivals: 0,
            timer: None,
            pool,
            writer,
            clock,
            settings,
            recovered: Vec::new(),
            draining: false,
        };
        for mut job in unfinished {
            if job.status == JobStatus::Running {
                job.status = JobStatus::Pending;
                job.attempts = job.attempts.saturating_sub(1);
                job.run_at = job.run_at.min(now);
                job.updated_at = now;
                tracing::warn!(job = %job.id, name = %job.name, "job was running when the process stopped; it runs again");
                q.recovered.push(job.clone());
            }
            q.add(job);
        }
        q
    }

    fn add(&mut self, job: Job) {
        self.arrivals += 1;
        self.waiting.insert((job.run_at, self.arrivals, job.id.clone()));
        self.jobs.insert(job.id.clone(), job);
    }

    fn pending(&self) -> usize {
        self.waiting.len() + self.ready.len()
    }

    /// Moves due jobs to `ready`, starts as many as there are free workers, and sets the timer
    /// for the next job that becomes due.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let now = self.clock.now_ms();
        while self.waiting.first().is_some_and(|w| w.0 <= now) {
            let Some((run_at, arrival, id)) = self.waiting.pop_first() else { break };
            if let Some(job) = self.jobs.get(&id) {
                self.ready.insert((Reverse(job.priority), run_at, arrival, id));
            }
        }
        while self.busy < self.settings.workers && !self.draining {
            let Some((_, _, _, id)) = self.ready.pop_first() else { break };
            self.start(id, now, ctx);
        }
        let next = self.waiting.first().map(|w| w.0);
        if self.timer.as_ref().map(|t| t.0) != next {
            if let Some((_, handle)) = self.timer.take() {
                ctx.cancel_future(handle);
            }
            if let Some(at) = next {
                let delay = Duration::from_millis((at - now).max(1) as u64).min(MAX_TIMER);
                let handle = ctx.run_later(delay, |act, ctx| {
                    act.timer = None;
                    act.pump(ctx);
                });
                self.timer = Some((at, handle));
            }
        }
        self.settings.observer.depth(self.pending(), self.running.len());
    }

    fn start(&mut self, id: String, now: i64, ctx: &mut Context<Self>) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        job.status = JobStatus::Running;
        job.attempts += 1;
        job.started_at = Some(now);
        job.updated_at = now;
        let (attempt, timeout_ms) = (job.attempts, job.timeout_ms);
        self.settings.observer.started(Duration::from_millis((now - job.run_at).max(0) as u64));
        let run = Run {
            id: id.clone(),
            name: job.name.clone(),
            payload: job.payload.clone(),
            attempt,
            deadline: Instant::now() + Duration::from_millis(timeout_ms),
        };
        let snapshot = job.clone();
        self.save(&snapshot, ctx);
        let timed_out = id.clone();
        let timeout = ctx.run_later(Duration::from_millis(timeout_ms), move |act, ctx| {
            act.finish(&timed_out, attempt, Err(format!("timed out after {timeout_ms} ms")), ctx);
            act.pump(ctx);
        });
        self.running.insert(id.clone(), Attempt { attempt, started: Instant::now(), timeout });
        self.busy += 1;
        self.pool
            .send(run)
            .into_actor(self)
            .map(move |answer, act, ctx| {
                act.busy -= 1;
                let outcome = answer.unwrap_or_else(|e| Err(format!("job worker unavailable: {e}")));
                act.finish(&id, attempt, outcome, ctx);
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    /// Records how attempt `attempt` of job `id` ended; a late answer (the attempt already timed
    /// out) is ignored.
    fn finish(&mut self, id: &str, attempt: u32, outcome: std::result::Result<Value, String>, ctx: &mut Context<Self>) {
        if self.running.get(id).is_none_or(|a| a.attempt != attempt) {
            return;
        }
        let Some(a) = self.running.remove(id) else { return };
        ctx.cancel_future(a.timeout);
        let run_time = a.started.elapsed();
        let now = self.clock.now_ms();
        let Some(job) = self.jobs.get_mut(id) else { return };
        job.updated_at = now;
        match outcome {
            Ok(result) => {
                job.status = JobStatus::Succeeded;
                job.finished_at = Some(now);
                job.result = Some(result).filter(|r| !r.is_null() && r.to_string().len() <= MAX_RESULT_BYTES);
                self.settings.observer.succeeded(run_time);
            }
            Err(error) => {
                self.settings.observer.failed(run_time);
                let error = truncate(error, MAX_ERROR_LEN);
                tracing::info!(job = %id, name = %job.name, attempt, error = %error, "job attempt failed");
                job.errors.push(AttemptError { attempt, error: error.clone(), at: now });
                if job.errors.len() > MAX_ERRORS_KEPT {
                    job.errors.remove(0);
                }
                job.last_error = Some(error);
                if job.attempts >= job.max_attempts {
                    job.status = JobStatus::Dead;
                    job.finished_at = Some(now);
                    self.settings.observer.dead();
                    tracing::warn!(job = %id, name = %job.name, attempts = job.attempts, "job is dead after its last attempt");
                } else {
                    job.status = JobStatus::Pending;
                    job.run_at = now + backoff_ms(self.settings.backoff_ms, job.attempts) as i64;
                    self.arrivals += 1;
                    self.waiting.insert((job.run_at, self.arrivals, id.to_string()));
                }
            }
        }
        let snapshot = job.clone();
        self.save(&snapshot, ctx);
    }

    /// Writes the job's current state; a finished job leaves memory once that is committed.
    fn save(&mut self, job: &Job, ctx: &mut Context<Self>) {
        let (id, status, at) = (job.id.clone(), job.status, job.updated_at);
        self.writer
            .send(Write { auth: job_writer(), ops: vec![job.save_op()] })
            .into_actor(self)
            .map(move |committed, act, _| match committed {
                Ok(Ok(_)) => {
                    let unchanged = act.jobs.get(&id).is_some_and(|j| j.status == status && j.updated_at == at);
                    if status.is_final() && unchanged {
                        act.jobs.remove(&id);
                    }
                }
                Ok(Err(e)) => tracing::error!(job = %id, error = %e, "could not save a job's state"),
                Err(e) => tracing::error!(job = %id, error = %e, "could not save a job's state"),
            })
            .spawn(ctx);
    }
}

impl Actor for JobQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAX_PENDING);
        for job in std::mem::take(&mut self.recovered) {
            self.save(&job, ctx);
        }
        self.pump(ctx);
    }
}

/// A new job. `also` commits in the same transaction (the Scheduler records the fire time).
#[derive(Message, Default)]
#[rtype(result = "Result<Job>")]
pub struct Enqueue {
    pub name: String,
    pub payload: Value,
    /// Milliseconds since the epoch; `None`: now.
    pub run_at: Option<i64>,
    pub max_attempts: Option<u32>,
    pub priority: Option<i64>,
    pub timeout_ms: Option<u64>,
    pub created_by: String,
    pub also: Vec<WriteOp>,
}

impl Handler<Enqueue> for JobQueue {
    type Result = ResponseActFuture<Self, Result<Job>>;
    fn handle(&mut self, msg: Enqueue, _: &mut Context<Self>) -> Self::Result {
        let checked = (|| {
            check_name(&msg.name)?;
            if self.pending() >= MAX_PENDING {
                return Err(PlazaError::Overloaded { retry_after_secs: 1 });
            }
            if msg.payload.to_string().len() > MAX_PAYLOAD_BYTES {
                return Err(PlazaError::Validation(format!("job payloads are limited to {MAX_PAYLOAD_BYTES} bytes of JSON")));
            }
            let max_attempts = msg.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
            if !(1..=MAX_MAX_ATTEMPTS).contains(&max_attempts) {
                return Err(PlazaError::Validation(format!("max_attempts must be between 1 and {MAX_MAX_ATTEMPTS}")));
            }
            let timeout_ms = msg.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
            if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
                return Err(PlazaError::Validation(format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")));
            }
            let now = self.clock.now_ms();
            Ok(Job {
                id: uuid::Uuid::now_v7().to_string(),
                name: msg.name,
                payload: msg.payload,
                status: JobStatus::Pending,
                priority: msg.priority.unwrap_or(0),
                run_at: msg.run_at.unwrap_or(now),
                attempts: 0,
                max_attempts,
                timeout_ms,
                last_error: None,
                errors: Vec::new(),
                result: None,
                created_by: msg.created_by,
                created_at: now,
                updated_at: now,
                started_at: None,
                finished_at: None,
            })
        })();
        let job = match checked {
            Ok(job) => job,
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let mut ops = vec![job.save_op()];
        ops.extend(msg.also);
        Box::pin(self.writer.send(Write { auth: job_writer(), ops }).into_actor(self).map(move |committed, act, ctx| {
            committed??;
            act.settings.observer.queued();
            act.add(job.clone());
            act.pump(ctx);
            Ok(job)
        }))
    }
}

/// A job still held in memory (pending, running, or finished and not yet committed); `None`
/// means: read it from the database.
#[derive(Message)]
#[rtype(result = "Option<Job>")]
pub struct Get {
    pub id: String,
}

impl Handler<Get> for JobQueue {
    type Result = Option<Job>;
    fn handle(&mut self, msg: Get, _: &mut Context<Self>) -> Option<Job> {
        self.jobs.get(&msg.id).cloned()
    }
}

/// Every job held in memory, to overlay on a database listing.
#[derive(Message)]
#[rtype(result = "Vec<Job>")]
pub struct List;

impl Handler<List> for JobQueue {
    type Result = Vec<Job>;
    fn handle(&mut self, _: List, _: &mut Context<Self>) -> Vec<Job> {
        self.jobs.values().cloned().collect()
    }
}

/// Brings a dead job back: pending now, attempts reset (its error history is kept). `stored`
/// is the job as read from the database, for jobs no longer in memory.
#[derive(Message)]
#[rtype(result = "Result<Job>")]
pub struct Retry {
    pub id: String,
    pub stored: Option<Job>,
}

impl Handler<Retry> for JobQueue {
    type Result = ResponseActFuture<Self, Result<Job>>;
    fn handle(&mut self, msg: Retry, _: &mut Context<Self>) -> Self::Result {
        let job = match self.jobs.get(&msg.id).cloned().or(msg.stored) {
            None => return Box::pin(fut::ready(Err(PlazaError::NotFound(format!("no job '{}'", msg.id))))),
            Some(j) if j.status != JobStatus::Dead => {
                let e = PlazaError::Conflict(format!("only dead jobs can be retried; this one is {}", j.status.as_str()));
                return Box::pin(fut::ready(Err(e)));
            }
            Some(mut j) => {
                let now = self.clock.now_ms();
                j.status = JobStatus::Pending;
                j.attempts = 0;
                j.run_at = now;
                j.updated_at = now;
                j.started_at = None;
                j.finished_at = None;
                j
            }
        };
        Box::pin(self.writer.send(Write { auth: job_writer(), ops: vec![job.save_op()] }).into_actor(self).map(
            move |committed, act, ctx| {
                committed??;
                act.jobs.remove(&job.id);
                act.add(job.clone());
                act.pump(ctx);
                Ok(job)
            },
        ))
    }
}

/// The process is stopping: start no new attempt. Attempts running now finish within the drain
/// (and are saved), or run again after the restart.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

impl Handler<Drain> for JobQueue {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {
        self.draining = true;
    }
}

/// Look at the clock now (tests that move an injected clock; the queue's own timer does this
/// otherwise).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

impl Handler<Wake> for JobQueue {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Context<Self>) {
        self.pump(ctx);
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize, MessageResponse)]
pub struct QueueStats {
    pub pending: usize,
    pub running: usize,
    pub busy_workers: usize,
}

#[derive(Message)]
#[rtype(result = "QueueStats")]
pub struct Stats;

impl Handler<Stats> for JobQueue {
    type Result = QueueStats;
    fn handle(&mut self, _: Stats, _: &mut Context<Self>) -> QueueStats {
        QueueStats { pending: self.pending(), running: self.running.len(), busy_workers: self.busy }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_equal_jitter_and_is_capped() {
        for _ in 0..200 {
            assert!((50..=100).contains(&backoff_ms(100, 1)));
            assert!((100..=200).contains(&backoff_ms(100, 2)));
            assert!((400..=800).contains(&backoff_ms(100, 4)));
            assert!((MAX_BACKOFF_MS / 2..=MAX_BACKOFF_MS).contains(&backoff_ms(1000, 60)));
        }
        assert!(backoff_ms(0, 1) <= 1);
    }
}

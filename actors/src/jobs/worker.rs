//! `JobWorker`: one per thread of the job `SyncArbiter`. Runs one attempt at a time behind
//! `catch_unwind`, so a panicking handler fails only its attempt and the thread carries on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use serde_json::Value;

use super::{JobContext, Registry, Services};

pub struct JobWorker {
    registry: Registry,
    services: Arc<Services>,
}

impl JobWorker {
    pub fn new(registry: Registry, services: Arc<Services>) -> JobWorker {
        JobWorker { registry, services }
    }
}

impl Actor for JobWorker {
    type Context = SyncContext<Self>;
}

/// Runs one attempt of a job.
#[derive(Message)]
#[rtype(result = "Result<Value, String>")]
pub struct Run {
    pub id: String,
    pub name: String,
    pub payload: Value,
    pub attempt: u32,
    pub deadline: Instant,
}

impl Handler<Run> for JobWorker {
    type Result = Result<Value, String>;
    fn handle(&mut self, msg: Run, _: &mut SyncContext<Self>) -> Self::Result {
        let Some(handler) = self.registry.get(&msg.name).cloned() else {
            return Err(format!("no handler is registered for job '{}'", msg.name));
        };
        let ctx = JobContext { id: msg.id, name: msg.name, attempt: msg.attempt, deadline: msg.deadline, services: self.services.clone() };
        match catch_unwind(AssertUnwindSafe(|| handler.run(&ctx, &msg.payload))) {
            Ok(outcome) => outcome,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".into());
                tracing::error!(job = %ctx.id, name = %ctx.name, panic = %why, "job handler panicked");
                Err(format!("the handler panicked: {why}"))
            }
        }
    }
}

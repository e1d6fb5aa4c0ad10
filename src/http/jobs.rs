//! Jobs over HTTP: enqueue (the admin any name; a session only names the manifest marks
//! `"public": true`), look one up, list by status and retry dead ones (admin). The jobs live in
//! the `JobQueue` actor while pending or running, and in `_plaza_jobs` after.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use plaza_actors::jobs::queue::{Enqueue, Get, List, Retry};
use plaza_actors::jobs::{self, Job, JobStatus};
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::resource;
use crate::error::ApiResult;
use crate::extract::{Admin, Auth, JsonBody};
use crate::AppState;

/// Jobs a listing answers by default, and at most.
pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1000;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/jobs").route(web::post().to(enqueue)).route(web::get().to(list)))
        .service(resource("/api/jobs/{id}").route(web::get().to(get)))
        .service(resource("/api/jobs/{id}/retry").route(web::post().to(retry)))
        .service(resource("/api/admin/cron").route(web::get().to(cron)));
}

/// Admin (Studio): `{"entries":[{name,cron,payload,last_fire,next_fire}]}`, built-in entries
/// first, then the manifest's.
async fn cron(_: Admin, state: web::Data<AppState>) -> ApiResult {
    let defs = state.plaza.manifest.jobs.clone();
    let now = chrono::Utc::now().timestamp_millis();
    let entries = state.read(move |r| r.with_conn(|c| jobs::scheduler::schedule(c, &defs, now))).await??;
    Ok(HttpResponse::Ok().json(json!({ "entries": entries })))
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn invalid(msg: &str) -> PlazaError {
    PlazaError::Validation(msg.into())
}

/// `run_at` as RFC 3339 or milliseconds since the epoch.
fn run_at(v: &Value) -> Result<i64, PlazaError> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| invalid("\"run_at\" must be RFC 3339 or integer milliseconds")),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| PlazaError::Validation(format!("\"run_at\" is not RFC 3339: {e}"))),
        _ => Err(invalid("\"run_at\" must be RFC 3339 or integer milliseconds")),
    }
}

/// `{"name","payload","run_at?","max_attempts?","priority?","timeout_ms?"}` → 201 `{"id"}`.
async fn enqueue(auth: Auth, state: web::Data<AppState>, JsonBody(body): JsonBody) -> ApiResult {
    let name = field(&body, "name").and_then(Value::as_str).ok_or_else(|| invalid("\"name\" is required"))?;
    jobs::check_name(name)?;
    if auth.ctx.read_only {
        return Err(PlazaError::Forbidden("a read-only API key cannot enqueue jobs".into()).into());
    }
    let created_by = match (&auth.ctx.user_id, auth.ctx.admin) {
        (_, true) => "admin".to_string(),
        (Some(user), false) if state.plaza.manifest.jobs.iter().any(|j| j.name == name && j.public) => user.clone(),
        (Some(_), false) => return Err(PlazaError::Forbidden(format!("sessions may not enqueue '{name}' (not marked public in the manifest)")).into()),
        (None, false) => return Err(PlazaError::Forbidden("enqueueing jobs needs a session or the admin token".into()).into()),
    };
    let int = |name: &str| -> Result<Option<i64>, PlazaError> {
        field(&body, name).map(|v| v.as_i64().ok_or_else(|| PlazaError::Validation(format!("\"{name}\" must be an integer")))).transpose()
    };
    let max_attempts = int("max_attempts")?.map(|n| u32::try_from(n).unwrap_or(0));
    let timeout_ms = int("timeout_ms")?.map(|n| u64::try_from(n).unwrap_or(0));
    let enqueue = Enqueue {
        name: name.to_string(),
        payload: body.get("payload").cloned().unwrap_or(Value::Null),
        run_at: field(&body, "run_at").map(run_at).transpose()?,
        max_attempts,
        priority: int("priority")?,
        timeout_ms,
        created_by,
        also: Vec::new(),
    };
    let job = state.plaza.jobs.send(enqueue).await??;
    Ok(HttpResponse::Created().json(json!({ "id": job.id })))
}

/// A job from the queue's memory, else from the database.
async fn find(state: &AppState, id: &str) -> Result<Option<Job>, crate::error::ApiError> {
    if let Some(job) = state.plaza.jobs.send(Get { id: id.to_string() }).await? {
        return Ok(Some(job));
    }
    let id = id.to_string();
    Ok(state.read(move |r| r.with_conn(|c| jobs::read_job(c, &id))).await??)
}

/// The admin sees every job; a session only the jobs it enqueued (others are 404).
async fn get(auth: Auth, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let missing = || PlazaError::NotFound(format!("no job '{id}'"));
    let job = find(&state, &id).await?.ok_or_else(missing)?;
    let mine = auth.ctx.admin || auth.ctx.user_id.as_deref().is_some_and(|u| u == job.created_by);
    if !mine {
        return Err(missing().into());
    }
    Ok(HttpResponse::Ok().json(job.to_json()))
}

/// `?status=pending|running|succeeded|dead&limit=` → `{"jobs":[...]}`, newest first.
async fn list(_: Admin, state: web::Data<AppState>, query: web::Query<HashMap<String, String>>) -> ApiResult {
    let status = match query.get("status").filter(|s| !s.is_empty()) {
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| invalid("status must be pending, running, succeeded or dead"))?),
        None => None,
    };
    let limit = match query.get("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| invalid("limit must be a non-negative integer"))?.min(MAX_LIST_LIMIT),
        None => DEFAULT_LIST_LIMIT,
    };
    // Memory first: a job leaves memory only once its final state is committed, so reading the
    // database second cannot miss it; of two versions the later one wins.
    let held = state.plaza.jobs.send(List).await?;
    let stored = state.read(move |r| r.with_conn(|c| jobs::read_jobs(c, status, limit))).await??;
    let mut by_id: HashMap<String, Job> = held.into_iter().map(|j| (j.id.clone(), j)).collect();
    for job in stored {
        if by_id.get(&job.id).is_none_or(|held| held.updated_at <= job.updated_at) {
            by_id.insert(job.id.clone(), job);
        }
    }
    let mut jobs: Vec<Job> = by_id.into_values().filter(|j| status.is_none_or(|s| j.status == s)).collect();
    jobs.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    jobs.truncate(limit);
    Ok(HttpResponse::Ok().json(json!({ "jobs": jobs.iter().map(Job::to_json).collect::<Vec<_>>() })))
}

/// A dead job becomes pending again with its attempts reset; other states are 409.
async fn retry(_: Admin, state: web::Data<AppState>, id: web::Path<String>) -> ApiResult {
    let key = id.to_string();
    let stored = state.read(move |r| r.with_conn(|c| jobs::read_job(c, &key))).await??;
    let job = state.plaza.jobs.send(Retry { id: id.to_string(), stored }).await??;
    Ok(HttpResponse::Ok().json(job.to_json()))
}

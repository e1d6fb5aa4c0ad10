//! Offline sync: `GET /api/sync/pull` (the change log after a client's cursor) and
//! `POST /api/sync/push` (a client's queued changes, deduplicated by op id).

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use futures_util::future::join_all;
use plaza_actors::model::change::Change;
use plaza_actors::changelog::{Bounds, Pull, Pulled};
use plaza_actors::model::policy::AuthContext;
use plaza_actors::model::rows;
use plaza_actors::store::writer::WriteOp;
use plaza_actors::model::query::MAX_LIMIT;
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::resource;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, JsonBody};
use crate::AppState;

pub const DEFAULT_PULL_LIMIT: usize = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/sync/pull").route(web::get().to(pull)))
        .service(resource("/api/sync/push").route(web::post().to(push)));
}

/// Longest client-chosen op id.
pub const MAX_OP_ID_LEN: usize = 128;

/// One pushed change → the write unit that applies it, deduplicated by op id when given.
fn push_unit(state: &AppState, auth: &AuthContext, change: &Value) -> Result<(Option<String>, Vec<WriteOp>), ApiError> {
    let text = |name: &str| change.get(name).and_then(Value::as_str);
    let entity = text("entity").ok_or_else(|| PlazaError::Validation("each change needs an \"entity\"".into()))?;
    let def = state.entity(entity)?;
    let row_id = rows::validate_id(change.get("row_id").unwrap_or(&Value::Null))
        .map_err(|_| PlazaError::Validation("each change needs a \"row_id\" (string)".into()))?;
    let data = change.get("data").unwrap_or(&Value::Null);
    let op = WriteOp::from_request(def, text("kind"), Some(&Value::String(row_id)), data)?;
    let op_id = match change.get("op_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= MAX_OP_ID_LEN => Some(s.clone()),
        Some(_) => return Err(PlazaError::Validation(format!("op_id must be a string of 1 to {MAX_OP_ID_LEN} characters")).into()),
    };
    Ok(match op_id {
        // Scoped to the caller, so one client cannot shadow another's op ids.
        Some(op_id) => {
            let who = if auth.admin { "admin".to_string() } else { auth.user_id.clone().unwrap_or_default() };
            let key = format!("{who}\u{1f}{op_id}");
            (Some(op_id), vec![WriteOp::SkipIfApplied { key: key.clone() }, op, WriteOp::RememberApplied { key }])
        }
        None => (None, vec![op]),
    })
}

fn applied(op_id: &Option<String>, change: Option<&Change>, duplicate: bool) -> Value {
    json!({
        "ok": true, "op_id": op_id, "duplicate": duplicate,
        "seq": change.map(|c| c.seq), "row_id": change.map(|c| c.row_id.clone()), "kind": change.map(|c| c.kind),
    })
}

/// `{"client_id"?, "changes": [{entity, row_id, kind, data?, op_id?}]}`: each change is
/// validated and policy-checked like the entity API and applied on its own; a repeated op_id
/// is not applied again and answers the first result (also after a restart).
async fn push(state: web::Data<AppState>, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    let changes = body
        .get("changes")
        .and_then(Value::as_array)
        .ok_or_else(|| PlazaError::Validation("expected {\"changes\": [...]}".into()))?;
    if changes.len() > crate::config::MAX_BULK_OPS {
        return Err(PlazaError::Validation(format!("at most {} changes per push", crate::config::MAX_BULK_OPS)).into());
    }
    let pending = changes.iter().map(|change| {
        let unit = push_unit(&state, &auth.ctx, change);
        // A change refused before it is applied still answers with the op_id it was sent with.
        let sent_op_id = change.get("op_id").and_then(Value::as_str).map(String::from);
        let (state, ctx) = (state.clone(), auth.ctx.clone());
        async move {
            let (op_id, ops) = match unit {
                Ok(u) => u,
                Err(e) => return (sent_op_id, Err(e)),
            };
            (op_id, state.write(&ctx, ops).await)
        }
    });
    let (mut applied_n, mut duplicates) = (0, 0);
    let mut results = Vec::with_capacity(changes.len());
    let mut errors = Vec::new();
    let mut highest_seq = 0;
    for (i, (op_id, outcome)) in join_all(pending).await.into_iter().enumerate() {
        results.push(match outcome {
            Ok(done) => {
                applied_n += 1;
                highest_seq = done.iter().map(|c| c.seq).fold(highest_seq, i64::max);
                applied(&op_id, done.first().map(|c| &**c), false)
            }
            Err(ApiError::Plaza(PlazaError::Duplicate(first))) => {
                duplicates += 1;
                let first: Vec<Change> = serde_json::from_str(&first).unwrap_or_default();
                highest_seq = first.iter().map(|c| c.seq).fold(highest_seq, i64::max);
                applied(&op_id, first.first(), true)
            }
            Err(e) => {
                // Pylon clients read one string per failed change; name the change they sent.
                let which = op_id.clone().unwrap_or_else(|| format!("change {i}"));
                errors.push(format!("{which}: {} {e}", e.code()));
                json!({"ok": false, "op_id": op_id, "error": e.body()["error"]})
            }
        });
    }
    // Where the log stands after this push (at least as far as what it wrote, even if the
    // log's own count has not caught up with the commit yet).
    let last_seq = state.plaza.changelog.send(Bounds).await?.last_seq.max(highest_seq);
    Ok(HttpResponse::Ok().json(json!({
        "applied": applied_n, "duplicates": duplicates, "results": results,
        // Pylon's names for the same answer.
        "deduped": duplicates, "errors": errors, "cursor": {"last_seq": last_seq},
    })))
}

fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<i64>, ApiError> {
    params
        .get(name)
        .map(|v| v.parse::<i64>().map_err(|_| PlazaError::Validation(format!("{name} must be an integer, got '{v}'")).into()))
        .transpose()
}

/// Only changes the caller may read are returned; `cursor.last_seq` still advances past the
/// ones filtered out, so a client never re-reads them.
async fn pull(state: web::Data<AppState>, params: web::Query<HashMap<String, String>>, auth: Auth) -> ApiResult {
    let since = number(&params, "since")?.unwrap_or(0);
    let limit = number(&params, "limit")?.map_or(DEFAULT_PULL_LIMIT, |l| l.clamp(1, MAX_LIMIT) as usize);
    let (changes, has_more) = match state.plaza.changelog.send(Pull { since, limit }).await?? {
        Pulled::Changes { changes, has_more } => (changes, has_more),
        Pulled::FromStore => {
            let (changes, has_more) = state.read(move |r| r.changes_since(since, limit)).await??;
            (changes.into_iter().map(Arc::new).collect(), has_more)
        }
    };
    let last_seq = changes.last().map_or(since, |c| c.seq);
    let policies = &state.plaza.policies;
    let visible: Vec<_> = changes.into_iter().filter(|c| policies.can_see(&auth.ctx, c)).collect();
    Ok(HttpResponse::Ok().json(json!({"changes": visible, "cursor": {"last_seq": last_seq}, "has_more": has_more})))
}

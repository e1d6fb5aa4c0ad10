//! Bulk operations: batch (independent) and transact (all or nothing) for any session, each op
//! checked against the policies and bounded in count; export (streamed) and import for the
//! admin only.

use std::convert::Infallible;

use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use plaza_actors::model::change::Change;
use plaza_actors::model::policy::AuthContext;
use plaza_actors::model::rows;
use plaza_actors::store::writer::{WriteEach, WriteOp};
use plaza_actors::PlazaError;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::resource;
use crate::config::MAX_BULK_OPS;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, JsonBody, LimitedBody, Member};
use crate::AppState;

/// Export is sent in chunks of about this many bytes; a few chunks in flight bound its memory.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;
const EXPORT_CHUNKS_IN_FLIGHT: usize = 4;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/batch").route(web::post().to(batch)))
        .service(resource("/api/transact").route(web::post().to(transact)))
        .service(resource("/api/export").route(web::get().to(export)))
        .service(resource("/api/import").route(web::post().to(import)));
}

/// `{"op":"insert|update|delete","entity","id?","data?"}` → a validated write.
fn parse_op(state: &AppState, op: &Value) -> Result<WriteOp, ApiError> {
    let entity = op
        .get("entity")
        .and_then(Value::as_str)
        .ok_or_else(|| PlazaError::Validation("each operation needs an \"entity\"".into()))?;
    let kind = op.get("op").and_then(Value::as_str);
    Ok(WriteOp::from_request(state.entity(entity)?, kind, op.get("id"), op.get("data").unwrap_or(&Value::Null))?)
}

/// The request's operations, at most `PLAZA_BULK_MAX_OPS_SESSION` for a session and
/// `MAX_BULK_OPS` for the admin; beyond, nothing is written.
fn operations<'b>(state: &AppState, auth: &AuthContext, body: &'b Value) -> Result<&'b Vec<Value>, ApiError> {
    let ops = match body {
        Value::Array(ops) => ops,
        _ => body
            .get("operations")
            .and_then(Value::as_array)
            .ok_or_else(|| PlazaError::Validation("expected {\"operations\": [...]} or an array".into()))?,
    };
    let max = if auth.admin { MAX_BULK_OPS } else { state.config.bulk_max_ops_session };
    if ops.len() > max {
        return Err(PlazaError::Validation(format!("at most {max} operations per request")).into());
    }
    Ok(ops)
}

fn committed(c: &std::sync::Arc<Change>) -> Value {
    json!({"ok": true, "op": c.kind, "entity": c.entity, "id": c.row_id, "seq": c.seq})
}

/// One write for the whole batch (a savepoint per op), so a batch takes one place in the
/// Writer's queue; ops that do not parse fail on their own without reaching it.
async fn batch(state: web::Data<AppState>, Member(auth): Member, JsonBody(body): JsonBody) -> ApiResult {
    let parsed: Vec<Result<WriteOp, ApiError>> = operations(&state, &auth.ctx, &body)?.iter().map(|op| parse_op(&state, op)).collect();
    let valid: Vec<WriteOp> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let mut written = state.plaza.writer.send(WriteEach { auth: auth.ctx.clone(), ops: valid }).await??.into_iter();
    let outcomes: Vec<Result<Option<std::sync::Arc<Change>>, ApiError>> = parsed
        .into_iter()
        .map(|p| match p {
            Ok(_) => written.next().unwrap_or_else(|| Err(PlazaError::Internal("write result missing".into()))).map_err(ApiError::from),
            Err(e) => Err(e),
        })
        .collect();
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| match o {
            Ok(change) => change.as_ref().map(committed).unwrap_or(Value::Null),
            Err(e) => json!({"ok": false, "error": e.body()["error"]}),
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"succeeded": outcomes.len() - failed, "failed": failed, "results": results})))
}

async fn transact(state: web::Data<AppState>, Member(auth): Member, JsonBody(body): JsonBody) -> ApiResult {
    let ops = operations(&state, &auth.ctx, &body)?.iter().map(|op| parse_op(&state, op)).collect::<Result<Vec<_>, _>>()?;
    let changes = state.write(&auth.ctx, ops).await?;
    Ok(HttpResponse::Ok().json(json!({"committed": true, "results": changes.iter().map(committed).collect::<Vec<_>>()})))
}

/// NDJSON, streamed: one read transaction (a consistent snapshot) on a blocking thread writes
/// chunks into a small channel that the response drains, so memory stays flat whatever the
/// database's size. A failure midway is logged and ends the body early.
async fn export(state: web::Data<AppState>, _: Admin) -> ApiResult {
    let (tx, rx) = mpsc::channel::<Bytes>(EXPORT_CHUNKS_IN_FLIGHT);
    let reader = state.plaza.reader.clone();
    actix_web::rt::task::spawn_blocking(move || {
        let outcome = reader.export(EXPORT_CHUNK_BYTES, |chunk| tx.blocking_send(Bytes::from(chunk)).is_ok());
        if let Err(e) = outcome {
            tracing::error!(error = %e, "export failed midway; the response ends early");
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) });
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").streaming(body))
}

/// NDJSON lines or one JSON array of `{"entity","data"}` (what export writes). Ids and
/// timestamps are kept; the whole import commits or none of it does.
async fn import(state: web::Data<AppState>, _: Admin, LimitedBody(bytes): LimitedBody) -> ApiResult {
    let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::InvalidJson("body is not UTF-8".into()))?;
    let items: Vec<Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).map_err(|e| ApiError::InvalidJson(e.to_string()))?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| serde_json::from_str(l).map_err(|e| ApiError::InvalidJson(format!("line {}: {e}", n + 1))))
            .collect::<Result<_, _>>()?
    };
    if items.len() > MAX_BULK_OPS * 10 {
        return Err(PlazaError::Validation(format!("at most {} rows per import", MAX_BULK_OPS * 10)).into());
    }
    let ops = items
        .iter()
        .enumerate()
        .map(|(n, item)| {
            let at = |e: ApiError| match e {
                ApiError::Plaza(PlazaError::Validation(m)) => PlazaError::Validation(format!("item {}: {m}", n + 1)).into(),
                other => other,
            };
            let entity = item.get("entity").and_then(Value::as_str).unwrap_or_default();
            let def = state.entity(entity).map_err(at)?;
            let data = item.get("data").unwrap_or(&Value::Null);
            let row = rows::validate_insert(def, data, true).map_err(|e| at(e.into()))?;
            Ok(WriteOp::Insert { entity: def.name.clone(), row, })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let imported = state.write(&AuthContext::admin(), ops).await?.len();
    Ok(HttpResponse::Ok().json(json!({"imported": imported})))
}

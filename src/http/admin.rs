//! Bulk operations: batch (independent) and transact (all or nothing) for any session, each op
//! checked against the policies; export and import for the admin only.

use actix_web::{web, HttpResponse};
use futures_util::future::join_all;
use plaza_actors::model::change::Change;
use plaza_actors::model::policy::AuthContext;
use plaza_actors::model::rows;
use plaza_actors::store::writer::WriteOp;
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::resource;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Admin, JsonBody, LimitedBody, Member};
use crate::AppState;

/// Most operations one batch, transact or import request may carry.
pub const MAX_BULK_OPS: usize = 10_000;

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

fn operations(body: &Value) -> Result<&Vec<Value>, ApiError> {
    let ops = match body {
        Value::Array(ops) => ops,
        _ => body
            .get("operations")
            .and_then(Value::as_array)
            .ok_or_else(|| PlazaError::Validation("expected {\"operations\": [...]} or an array".into()))?,
    };
    if ops.len() > MAX_BULK_OPS {
        return Err(PlazaError::Validation(format!("at most {MAX_BULK_OPS} operations per request")).into());
    }
    Ok(ops)
}

fn committed(c: &Change) -> Value {
    json!({"ok": true, "op": c.kind, "entity": c.entity, "id": c.row_id, "seq": c.seq})
}

async fn batch(state: web::Data<AppState>, Member(auth): Member, JsonBody(body): JsonBody) -> ApiResult {
    let ops = operations(&body)?;
    // Sent together, the writes share one group commit; each keeps its own savepoint.
    let pending = ops.iter().map(|op| {
        let parsed = parse_op(&state, op);
        let (state, auth) = (state.clone(), auth.ctx.clone());
        async move { state.write(&auth, vec![parsed?]).await }
    });
    let outcomes = join_all(pending).await;
    let failed = outcomes.iter().filter(|o| o.is_err()).count();
    let results: Vec<Value> = outcomes
        .iter()
        .map(|o| match o {
            Ok(changes) => changes.first().map(committed).unwrap_or(Value::Null),
            Err(e) => json!({"ok": false, "error": e.body()["error"]}),
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({"succeeded": outcomes.len() - failed, "failed": failed, "results": results})))
}

async fn transact(state: web::Data<AppState>, Member(auth): Member, JsonBody(body): JsonBody) -> ApiResult {
    let ops = operations(&body)?.iter().map(|op| parse_op(&state, op)).collect::<Result<Vec<_>, _>>()?;
    let changes = state.write(&auth.ctx, ops).await?;
    Ok(HttpResponse::Ok().json(json!({"committed": true, "results": changes.iter().map(committed).collect::<Vec<_>>()})))
}

async fn export(state: web::Data<AppState>, _: Admin) -> ApiResult {
    let body = state
        .read(|r| {
            let mut out = Vec::new();
            r.export(&mut out).map(|_| out)
        })
        .await??;
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").body(body))
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

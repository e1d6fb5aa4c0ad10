//! Entity CRUD, list, cursor pagination and `POST /api/query/:Entity`.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use plaza_actors::model::query::{self, Query, DEFAULT_LIST_LIMIT, MAX_LIMIT};
use plaza_actors::model::rows;
use plaza_actors::store::writer::WriteOp;
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::resource;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, JsonBody};
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/entities/{entity}").route(web::get().to(list)).route(web::post().to(create)))
        .service(resource("/api/entities/{entity}/cursor").route(web::get().to(cursor)))
        .service(
            resource("/api/entities/{entity}/{id}")
                .route(web::get().to(get))
                .route(web::patch().to(update))
                .route(web::delete().to(delete)),
        )
        .service(resource("/api/query/{entity}").route(web::post().to(query)));
}

type Params = web::Query<HashMap<String, String>>;

async fn create(state: web::Data<AppState>, entity: web::Path<String>, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    let def = state.entity(&entity)?;
    let row = rows::validate_insert(def, &body, false)?;
    let changes = state.write(&auth.ctx, vec![WriteOp::Insert { entity: def.name.clone(), row }]).await?;
    Ok(HttpResponse::Created().json(json!({ "id": changes[0].row_id })))
}

async fn get(state: web::Data<AppState>, path: web::Path<(String, String)>, auth: Auth) -> ApiResult {
    let (entity, id) = path.into_inner();
    // A primary-key lookup, answered on this worker (no hop to a read thread): see
    // docs/PERFORMANCE.md for its measured worst case.
    let row = state.plaza.reader.get(&auth.ctx, &entity, &id)?.ok_or_else(|| not_found(&entity, &id))?;
    Ok(HttpResponse::Ok().json(row))
}

async fn update(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    auth: Auth,
    JsonBody(body): JsonBody,
) -> ApiResult {
    let (entity, id) = path.into_inner();
    let def = state.entity(&entity)?;
    if body.get("id").is_some_and(|v| v.as_str() != Some(id.as_str())) {
        return Err(PlazaError::Validation("id in the body does not match the path".into()).into());
    }
    let values = rows::validate_patch(def, &body)?;
    let changes = state.write(&auth.ctx, vec![WriteOp::Update { entity, id, values }]).await?;
    Ok(HttpResponse::Ok().json(changes.first().and_then(|c| c.data.as_ref())))
}

async fn delete(state: web::Data<AppState>, path: web::Path<(String, String)>, auth: Auth) -> ApiResult {
    let (entity, id) = path.into_inner();
    state.entity(&entity)?;
    state.write(&auth.ctx, vec![WriteOp::Delete { entity, id }]).await?;
    Ok(HttpResponse::Ok().json(json!({ "deleted": true })))
}

async fn list(state: web::Data<AppState>, entity: web::Path<String>, params: Params, auth: Auth) -> ApiResult {
    let def = state.entity(&entity)?;
    let q = Query::from_params(def, &params)?;
    let (limit, offset) = (q.limit_or(DEFAULT_LIST_LIMIT), q.offset.unwrap_or(0));
    let data = state.read(move |r| r.query(&auth.ctx, &entity, &q, DEFAULT_LIST_LIMIT)).await??;
    Ok(HttpResponse::Ok().json(json!({ "count": data.len(), "data": data, "offset": offset, "limit": limit })))
}

async fn cursor(state: web::Data<AppState>, entity: web::Path<String>, params: Params, auth: Auth) -> ApiResult {
    state.entity(&entity)?;
    if params.contains_key("order") {
        return Err(PlazaError::Validation("cursor pages are in id order; use the list endpoint to order by a field".into()).into());
    }
    let limit = match params.get("limit") {
        Some(l) => query::parse_number::<i64>("limit", l)?.clamp(1, MAX_LIMIT),
        None => DEFAULT_LIST_LIMIT,
    };
    let after = params.get("after").filter(|a| !a.is_empty()).map(|a| decode_cursor(a)).transpose()?;
    let filter = query::Filter::everything();
    let (data, has_more) = state.read(move |r| r.page_after(&auth.ctx, &entity, &filter, after.as_deref(), limit)).await??;
    let next_cursor = match (has_more, data.last()) {
        (true, Some(last)) => last.get("id").and_then(Value::as_str).map(encode_cursor),
        _ => None,
    };
    Ok(HttpResponse::Ok().json(json!({ "data": data, "next_cursor": next_cursor, "has_more": has_more })))
}

async fn query(state: web::Data<AppState>, entity: web::Path<String>, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    let def = state.entity(&entity)?;
    let q = Query::parse(def, &body)?;
    let rows = state.read(move |r| r.query(&auth.ctx, &entity, &q, MAX_LIMIT)).await??;
    Ok(HttpResponse::Ok().json(rows))
}

fn not_found(entity: &str, id: &str) -> PlazaError {
    PlazaError::NotFound(format!("{entity} '{id}' not found"))
}

fn encode_cursor(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

fn decode_cursor(c: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| PlazaError::Validation("invalid cursor".into()).into())
}

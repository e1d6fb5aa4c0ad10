//! The cache over HTTP (admin only): `POST /api/cache` runs one command, `GET`/`DELETE
//! /api/cache/:key` read and remove one key. The entries live in the `Cache` actor.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use plaza_actors::cache::{self, Del, Expire, Get, Incr, Set};
use plaza_actors::PlazaError;
use serde_json::{json, Value};

use super::resource;
use crate::error::ApiResult;
use crate::extract::{Admin, JsonBody, Page};
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/cache").route(web::post().to(command)))
        .service(resource("/api/cache/{key}").route(web::get().to(get)).route(web::delete().to(del)))
        .service(resource("/api/admin/cache").route(web::get().to(keys)));
}

/// Admin (Studio): `?prefix=&limit=` → `{"keys":[{key,bytes,expires_at}],"total"}` in key order.
async fn keys(_: Admin, state: web::Data<AppState>, page: Page, query: web::Query<HashMap<String, String>>) -> ApiResult {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let list = state.plaza.cache.send(cache::Keys { prefix, limit: page.limit }).await?;
    Ok(HttpResponse::Ok().json(list))
}

fn result(v: impl Into<Value>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "result": v.into() }))
}

fn miss(key: &str) -> PlazaError {
    PlazaError::NotFound(format!("no cache entry '{key}'"))
}

/// `{"cmd":"SET|GET|DEL|INCR|EXPIRE","key","value?","ttl?"}`; `ttl` is in seconds, `value` is
/// INCR's increment (default 1).
async fn command(_: Admin, state: web::Data<AppState>, JsonBody(body): JsonBody) -> ApiResult {
    let cmd = body.get("cmd").and_then(Value::as_str).unwrap_or_default().to_ascii_uppercase();
    let key = body.get("key").and_then(Value::as_str).unwrap_or_default().to_string();
    cache::check_key(&key)?;
    let ttl = body.get("ttl").filter(|t| !t.is_null()).map(cache::ttl_ms).transpose()?;
    let addr = &state.plaza.cache;
    Ok(match cmd.as_str() {
        "GET" => result(addr.send(Get { key: key.clone() }).await?.ok_or_else(|| miss(&key))?),
        "SET" => {
            let value = body.get("value").cloned().ok_or_else(|| PlazaError::Validation("SET needs a \"value\"".into()))?;
            addr.send(Set { key, value, ttl_ms: ttl }).await??;
            result("OK")
        }
        "DEL" => result(addr.send(Del { key }).await?),
        "INCR" => {
            let by = match body.get("value") {
                None | Some(Value::Null) => 1,
                Some(v) => v.as_i64().ok_or_else(|| PlazaError::Validation("INCR's \"value\" must be an integer".into()))?,
            };
            result(addr.send(Incr { key, by }).await??)
        }
        "EXPIRE" => {
            let ttl_ms = ttl.ok_or_else(|| PlazaError::Validation("EXPIRE needs a \"ttl\" in seconds".into()))?;
            result(addr.send(Expire { key, ttl_ms }).await?)
        }
        other => {
            return Err(PlazaError::Validation(format!("\"cmd\" must be SET, GET, DEL, INCR or EXPIRE, got '{other}'")).into())
        }
    })
}

async fn get(_: Admin, state: web::Data<AppState>, key: web::Path<String>) -> ApiResult {
    let key = key.into_inner();
    cache::check_key(&key)?;
    let value = state.plaza.cache.send(Get { key: key.clone() }).await?.ok_or_else(|| miss(&key))?;
    Ok(result(value))
}

async fn del(_: Admin, state: web::Data<AppState>, key: web::Path<String>) -> ApiResult {
    let key = key.into_inner();
    cache::check_key(&key)?;
    Ok(result(state.plaza.cache.send(Del { key }).await?))
}

//! Query power on the filter language: graph queries with includes (`POST /api/query`),
//! link/unlink of relations, aggregates and full-text search. Reads run on the read threads,
//! link/unlink go through the Writer as ordinary updates.

use actix_web::{web, HttpResponse};
use plaza_actors::model::aggregate::Aggregate;
use plaza_actors::model::graph::GraphQuery;
use plaza_actors::model::query::{parse_filter, parse_number, Filter, MAX_LIMIT};
use plaza_actors::model::search::SearchText;
use plaza_actors::store::search::{SearchRequest, DEFAULT_SEARCH_LIMIT};
use plaza_actors::store::link::Link;
use plaza_actors::PlazaError;
use serde::Deserialize;
use serde_json::{json, Value};

use super::resource;
use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody};
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/query").route(web::post().to(graph)))
        .service(resource("/api/link").route(web::post().to(link)))
        .service(resource("/api/unlink").route(web::post().to(unlink)))
        .service(resource("/api/aggregate/{entity}").route(web::post().to(aggregate)))
        .service(resource("/api/search/{entity}").route(web::get().to(search)));
}

fn bad(msg: impl Into<String>) -> PlazaError {
    PlazaError::Validation(msg.into())
}

/// `{"User":{"where":{..},"include":{"todos":{..}}}}` → `{"User":[{..row,"todos":[..]}]}`.
async fn graph(state: web::Data<AppState>, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    let q = GraphQuery::parse(&state.plaza.manifest, &body)?;
    let out = state.read(move |r| r.graph(&auth.ctx, &q)).await??;
    Ok(HttpResponse::Ok().json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkBody {
    entity: String,
    id: Value,
    relation: String,
    target_id: Value,
}

fn resolve_link(state: &AppState, body: Value) -> Result<Link, crate::error::ApiError> {
    let b: LinkBody = serde_json::from_value(body)
        .map_err(|e| bad(format!("expected {{\"entity\",\"id\",\"relation\",\"target_id\"}}: {e}")))?;
    Ok(Link::resolve(&state.plaza.manifest, &b.entity, &b.id, &b.relation, &b.target_id)?)
}

fn linked(changes: Vec<std::sync::Arc<plaza_actors::model::change::Change>>) -> ApiResult {
    let c = changes.first().ok_or_else(|| PlazaError::Internal("link committed no change".into()))?;
    Ok(HttpResponse::Ok().json(json!({"ok": true, "entity": c.entity, "id": c.row_id, "seq": c.seq, "data": &c.data})))
}

/// `{"entity","id","relation","target_id"}`: sets the relation's key through the Writer. The
/// row pointed to must exist and be readable by the caller (404 otherwise).
async fn link(state: web::Data<AppState>, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    let l = resolve_link(&state, body)?;
    let (ctx, other, other_id) = (auth.ctx.clone(), l.other.clone(), l.other_id.clone());
    if state.read(move |r| r.get(&ctx, &other, &other_id)).await??.is_none() {
        return Err(PlazaError::NotFound(format!("{} '{}' not found", l.other, l.other_id)).into());
    }
    linked(state.write(&auth.ctx, vec![l.link_op()]).await?)
}

/// Clears the relation's key, only if it still points at the row named: 404 when it does not.
async fn unlink(state: web::Data<AppState>, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    let l = resolve_link(&state, body)?;
    let op = l.unlink_op(&state.plaza.manifest)?;
    linked(state.write(&auth.ctx, vec![op]).await?)
}

/// `{"count":"*","sum":"f","groupBy":["g"],"where":{..}}` → `{"groups":[{"key":{"g":v},"count":N,"sum":S}]}`,
/// computed in SQL over only the rows the caller may read.
async fn aggregate(state: web::Data<AppState>, entity: web::Path<String>, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    let def = state.entity(&entity)?;
    let agg = Aggregate::parse(def, &body)?;
    let groups = state.read(move |r| r.aggregate(&auth.ctx, &entity, &agg)).await??;
    Ok(HttpResponse::Ok().json(json!({ "groups": groups })))
}

/// `?q=&facets=a,b&limit=&offset=&filter=` → `{"data":[..row,"_score"],"total":N,"facets":{"a":{"v":n}}}`:
/// ranked by bm25 (`_score` = -bm25, higher is better); without `q`, every row the filter
/// selects, in id order (facet browsing). Facets default to all the manifest declares.
async fn search(
    state: web::Data<AppState>,
    entity: web::Path<String>,
    params: web::Query<std::collections::HashMap<String, String>>,
    auth: Auth,
) -> ApiResult {
    let def = state.entity(&entity)?;
    let declared = def.search.as_ref().ok_or_else(|| bad(format!("{entity} declares no full-text search")))?;
    if let Some(k) = params.keys().find(|k| !matches!(k.as_str(), "q" | "facets" | "limit" | "offset" | "filter")) {
        return Err(bad(format!("unknown parameter '{k}' (expected q, facets, limit, offset, filter)")).into());
    }
    let q = params.get("q").map(String::as_str).unwrap_or("");
    let text = if q.trim().is_empty() { None } else { Some(SearchText::parse(q)?) };
    let filter = match params.get("filter") {
        Some(f) => {
            let v: Value = serde_json::from_str(f).map_err(|e| bad(format!("filter is not JSON: {e}")))?;
            parse_filter(def, v.as_object().ok_or_else(|| bad("filter must be a JSON object"))?)?
        }
        None => Filter::everything(),
    };
    let facets = match params.get("facets") {
        Some(list) => list.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_string).collect(),
        None => declared.facets.clone(),
    };
    if let Some(f) = facets.iter().find(|f| !declared.facets.contains(f)) {
        return Err(bad(format!("'{f}' is not a facet of {entity} (declared: {})", declared.facets.join(", "))).into());
    }
    let limit = match params.get("limit") {
        Some(l) => parse_number::<i64>("limit", l)?.clamp(0, MAX_LIMIT) as usize,
        None => DEFAULT_SEARCH_LIMIT,
    };
    let offset = match params.get("offset") {
        Some(o) => parse_number::<i64>("offset", o)?.max(0) as usize,
        None => 0,
    };
    let req = SearchRequest { text, filter, facets, limit, offset };
    let found = state.read(move |r| r.search(&auth.ctx, &entity, &req)).await??;
    Ok(HttpResponse::Ok().json(json!({ "data": found.data, "total": found.total, "facets": found.facets })))
}

/// Request and response schemas of the routes above, added to the OpenAPI document.
pub fn openapi(paths: &mut serde_json::Map<String, Value>, schemas: &mut serde_json::Map<String, Value>) {
    let r = |name: &str| json!({"$ref": format!("#/components/schemas/{name}")});
    let names = json!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]});
    let order = json!({"description": "{\"field\":\"asc\"}, [[\"field\",\"desc\"]] or \"-field\""});
    for (name, schema) in [
        ("Filter", json!({"type": "object", "additionalProperties": true,
            "description": "The filter language: {\"field\": value} or {\"field\": {\"$gt\"|\"$gte\"|\"$lt\"|\"$lte\"|\"$ne\"|\"$eq\"|\"$in\"|\"$like\"|\"$not\": ..}}, $and, $or, $not, and $search (full text) where the entity declares search"})),
        ("GraphNode", json!({"type": "object", "properties": {
            "where": r("Filter"), "$order": order, "$limit": {"type": "integer", "minimum": 0}, "$offset": {"type": "integer", "minimum": 0},
            "include": {"type": "object", "description": "relation name → GraphNode (at most 4 levels)", "additionalProperties": r("GraphNode")}}})),
        ("GraphQuery", json!({"type": "object", "description": "entity name → GraphNode; at most 5,000 rows in all",
            "additionalProperties": r("GraphNode")})),
        ("GraphResult", json!({"type": "object", "description": "entity name → rows, each with its includes (an array for to-many, an object or null for to-one)",
            "additionalProperties": {"type": "array", "items": {"type": "object", "additionalProperties": true}}})),
        ("LinkRequest", json!({"type": "object", "required": ["entity", "id", "relation", "target_id"], "properties": {
            "entity": {"type": "string"}, "id": {"type": "string"}, "relation": {"type": "string"}, "target_id": {"type": "string"}}})),
        ("LinkResult", json!({"type": "object", "properties": {
            "ok": {"type": "boolean"}, "entity": {"type": "string", "description": "the entity of the row that holds the key"},
            "id": {"type": "string"}, "seq": {"type": "integer", "format": "int64"}, "data": {"type": "object", "additionalProperties": true}}})),
        ("AggregateRequest", json!({"type": "object", "properties": {
            "count": {"description": "\"*\" or a field (non-null values)"}, "sum": names.clone(), "avg": names.clone(), "min": names.clone(),
            "max": names.clone(), "groupBy": names, "where": r("Filter")}})),
        ("AggregateResult", json!({"type": "object", "properties": {"groups": {"type": "array", "items": {"type": "object",
            "properties": {"key": {"type": "object", "additionalProperties": true}, "count": {"type": "integer"}},
            "additionalProperties": true}}}})),
        ("SearchResult", json!({"type": "object", "properties": {
            "data": {"type": "array", "items": {"type": "object", "additionalProperties": true,
                "properties": {"_score": {"type": "number", "description": "-bm25: higher is a better match"}}}},
            "total": {"type": "integer"},
            "facets": {"type": "object", "additionalProperties": {"type": "object", "additionalProperties": {"type": "integer"}}}}})),
    ] {
        schemas.insert(name.into(), schema);
    }
    let io = |paths: &mut serde_json::Map<String, Value>, path: &str, method: &str, request: Option<&str>, response: &str| {
        let Some(op) = paths.get_mut(path).and_then(|p| p.get_mut(method)) else { return };
        if let Some(req) = request {
            op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": r(req)}}});
        }
        op["responses"]["200"]["content"] = json!({"application/json": {"schema": r(response)}});
    };
    io(paths, "/api/query", "post", Some("GraphQuery"), "GraphResult");
    io(paths, "/api/link", "post", Some("LinkRequest"), "LinkResult");
    io(paths, "/api/unlink", "post", Some("LinkRequest"), "LinkResult");
    io(paths, "/api/aggregate/{Entity}", "post", Some("AggregateRequest"), "AggregateResult");
    io(paths, "/api/search/{Entity}", "get", None, "SearchResult");
    if let Some(params) = paths.get_mut("/api/search/{Entity}").and_then(|p| p["get"]["parameters"].as_array_mut()) {
        for (name, ty, what) in [
            ("q", "string", "words to find (all of them); a word directly followed by * is a prefix; other syntax is text"),
            ("facets", "string", "comma-separated facet fields (default: all declared)"),
            ("limit", "integer", "rows per page (default 20, at most 1000)"),
            ("offset", "integer", "rows to skip"),
            ("filter", "string", "a filter object as URL-encoded JSON"),
        ] {
            params.push(json!({"name": name, "in": "query", "required": false, "description": what, "schema": {"type": ty}}));
        }
    }
}

//! Operations: health, readiness, metrics and the OpenAPI document.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use plaza_actors::changelog::Bounds;
use plaza_actors::PlazaError;
use serde_json::{json, Map, Value};

use super::{resource, API_ROUTES};
use crate::error::ApiResult;
use crate::extract::Admin;
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/health").route(web::get().to(health)))
        .service(resource("/ready").route(web::get().to(ready)))
        .service(resource("/metrics").route(web::get().to(metrics)))
        .service(resource("/api/openapi.json").route(web::get().to(openapi)))
        .service(resource("/api/admin/manifest").route(web::get().to(manifest)));
}

/// Admin (Studio): the app manifest as loaded (entities with their fields, policies, rooms,
/// shards, jobs, topics), so the UI can build typed tables and forms.
async fn manifest(_: Admin, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(&*state.plaza.manifest)
}

async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started.elapsed().as_secs(),
    }))
}

/// 200 while the server takes traffic; 503 with the usual error body while it drains or when
/// the database cannot answer, so a load balancer moves clients elsewhere.
async fn ready(state: web::Data<AppState>) -> ApiResult {
    if state.is_draining() {
        return Err(PlazaError::Unavailable("the server is draining; send traffic elsewhere".into()).into());
    }
    match state.read(|r| r.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        _ => Err(PlazaError::Unavailable("the database is not answering".into()).into()),
    }
}

async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> ApiResult {
    let wants_text = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/plain"));
    if wants_text {
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(state.metrics.prometheus_text()));
    }
    let bounds = state.plaza.changelog.send(Bounds).await?;
    let pubsub = state.plaza.pubsub.send(plaza_actors::pubsub::Stats).await?;
    let cache = state.plaza.cache.send(plaza_actors::cache::Stats).await?;
    let writer = state.plaza.writer.send(plaza_actors::store::writer::Stats).await?;
    Ok(HttpResponse::Ok().json(json!({
        "requests": state.metrics.requests_json(),
        "changelog": {"last_seq": bounds.last_seq, "oldest_seq": bounds.oldest_seq},
        "ws": state.metrics.ws_json(),
        "rooms": crate::metrics::rooms_json(&state.plaza.rooms.stats),
        "shards": state.metrics.shards.json(),
        "jobs": state.metrics.jobs.json(),
        "pubsub": pubsub,
        "cache": cache,
        "writer": writer,
        "accounts": state.accounts.json(),
        "uptime_s": state.started.elapsed().as_secs(),
    })))
}

/// OpenAPI 3.0.3: every route of `API_ROUTES`, plus one list/insert path per manifest entity
/// with its row schema, so generated clients get typed rows.
async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    let mut paths = Map::new();
    for (method, path, summary, tag) in API_ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let op = operation(summary, tag, params);
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[*method] = op;
    }
    let mut schemas = Map::new();
    schemas.insert("Error".into(), json!({
        "type": "object",
        "properties": {"error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}
    }));
    for e in &state.plaza.manifest.entities {
        let mut props = Map::new();
        for sys in ["id", "createdAt", "updatedAt"] {
            props.insert(sys.into(), json!({"type": "string", "readOnly": true}));
        }
        for f in &e.fields {
            props.insert(f.name.clone(), field_schema(&f.ty));
        }
        let required: Vec<&str> = e.fields.iter().filter(|f| !f.optional).map(|f| f.name.as_str()).collect();
        schemas.insert(e.name.clone(), json!({"type": "object", "properties": props, "required": required}));
        let row_ref = json!({"$ref": format!("#/components/schemas/{}", e.name)});
        paths.insert(format!("/api/entities/{}", e.name), json!({
            "get": operation(&format!("List {} rows", e.name), "entities", vec![]),
            "post": {
                "summary": format!("Insert a {}", e.name), "tags": ["entities"],
                "requestBody": {"required": true, "content": {"application/json": {"schema": row_ref}}},
                "responses": {"201": {"description": "Created"}, "400": error_response(), "409": error_response()}
            }
        }));
    }
    super::query::openapi(&mut paths, &mut schemas);
    HttpResponse::Ok().json(json!({
        "openapi": "3.0.3",
        "info": {"title": format!("Plaza API{}", app_suffix(&state)), "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        },
        "security": [{"bearer": []}, {}],
    }))
}

fn app_suffix(state: &AppState) -> String {
    let name = &state.plaza.manifest.name;
    if name.is_empty() { String::new() } else { format!(" ({name})") }
}

fn operation(summary: &str, tag: &str, params: Vec<Value>) -> Value {
    json!({
        "summary": summary,
        "tags": [tag],
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "default": error_response()}
    })
}

fn error_response() -> Value {
    json!({"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn field_schema(ty: &plaza_actors::model::manifest::FieldType) -> Value {
    use plaza_actors::model::manifest::FieldType::*;
    match ty {
        String | Id(_) => json!({"type": "string"}),
        Int => json!({"type": "integer", "format": "int64"}),
        Float => json!({"type": "number"}),
        Bool => json!({"type": "integer", "enum": [0, 1]}),
        Datetime => json!({"type": "string", "format": "date-time"}),
        Json => json!({}),
    }
}

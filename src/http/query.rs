//! Query power on the filter language: graph queries with includes (`POST /api/query`),
//! link/unlink of relations, aggregates and full-text search. Reads run on the read threads,
//! link/unlink go through the Writer as ordinary updates.

use actix_web::{web, HttpResponse};
use plaza_actors::model::graph::GraphQuery;

use super::resource;
use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody};
use crate::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/query").route(web::post().to(graph)));
}

/// `{"User":{"where":{..},"include":{"todos":{..}}}}` → `{"User":[{..row,"todos":[..]}]}`.
async fn graph(state: web::Data<AppState>, auth: Auth, JsonBody(body): JsonBody) -> ApiResult {
    let q = GraphQuery::parse(&state.plaza.manifest, &body)?;
    let out = state.read(move |r| r.graph(&auth.ctx, &q)).await??;
    Ok(HttpResponse::Ok().json(out))
}

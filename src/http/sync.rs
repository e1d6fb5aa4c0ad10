//! `GET /api/sync/pull`: the persistent change log after a client's cursor.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::{web, HttpResponse};
use plaza_actors::changelog::{Pull, Pulled};
use plaza_actors::query::MAX_LIMIT;
use plaza_actors::PlazaError;
use serde_json::json;

use super::resource;
use crate::error::{ApiError, ApiResult};
use crate::extract::Auth;
use crate::AppState;

pub const DEFAULT_PULL_LIMIT: usize = 100;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/api/sync/pull").route(web::get().to(pull)));
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
        Pulled::Changes { changes, has_more, .. } => (changes, has_more),
        Pulled::FromStore { .. } => {
            let reader = state.plaza.reader.clone();
            let (changes, has_more) = web::block(move || reader.changes_since(since, limit)).await??;
            (changes.into_iter().map(Arc::new).collect(), has_more)
        }
    };
    let last_seq = changes.last().map_or(since, |c| c.seq);
    let policies = &state.plaza.policies;
    let visible: Vec<_> = changes.into_iter().filter(|c| policies.can_see(&auth.ctx, c)).collect();
    Ok(HttpResponse::Ok().json(json!({"changes": visible, "cursor": {"last_seq": last_seq}, "has_more": has_more})))
}

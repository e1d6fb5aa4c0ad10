//! Studio, the admin web UI: plain HTML, CSS and JavaScript modules from `studio/`, compiled
//! into the binary and served at `/studio/`. The assets are code, not data: everything Studio
//! shows comes from the API with the admin token as a bearer header (kept in the tab's
//! sessionStorage, never a cookie), so until a token is accepted the page shows only its
//! sign-in form. Assets are not fingerprinted, so they are served with `Cache-Control:
//! no-cache` and an ETag (their SHA-256): browsers revalidate and get 304 until the binary
//! changes.

use std::borrow::Cow;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::Embed;

use super::resource;
use crate::error::{ApiError, ApiResult};

#[derive(Embed)]
#[folder = "studio/"]
struct Assets;

/// Scripts, styles and connections only from this origin (the WebSocket included); no inline
/// script or style, no plugins, never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/studio").route(web::get().to(to_index)).route(web::head().to(to_index)))
        .service(resource("/studio/{path:.*}").route(web::get().to(asset)).route(web::head().to(asset)));
}

/// `/studio` → `/studio/`, so the page's relative module paths resolve under it.
async fn to_index() -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, "/studio/")).finish()
}

async fn asset(req: HttpRequest, path: web::Path<String>) -> ApiResult {
    let path = match path.as_str() {
        "" => "index.html",
        p => p,
    };
    let file = Assets::get(path).ok_or_else(|| ApiError::RouteNotFound(format!("GET {}", req.path())))?;
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh { HttpResponse::NotModified() } else { HttpResponse::Ok() };
    resp.insert_header((header::ETAG, etag))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::REFERRER_POLICY, "no-referrer"));
    if fresh {
        return Ok(resp.finish());
    }
    let body = match file.data {
        Cow::Borrowed(bytes) => web::Bytes::from_static(bytes),
        Cow::Owned(bytes) => web::Bytes::from(bytes),
    };
    Ok(resp.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)))).body(body))
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

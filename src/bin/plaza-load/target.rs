//! Where a mode's requests go: the `--target` URL, or a server spawned for the run; and the
//! HTTP client that carries the admin token (and an `Origin` for a target's CSRF check).

use std::time::Duration;

use awc::http::header;

use crate::rng::random_token;
use crate::server::Server;

/// Whole-request timeout (send + response + body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// TCP connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response body read (a list page of 20 small rows is far below this).
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;

/// Where requests go and which headers they carry.
pub struct Target {
    pub base: String,
    pub token: Option<String>,
    pub send_origin: bool,
}

/// The base URL and headers for `--target`, or a freshly spawned server (given `extra` flags)
/// and its URL. The returned guard stops the spawned server when dropped.
pub fn resolve_target(
    url: Option<&str>,
    token: Option<String>,
    extra: &[&str],
) -> Result<(Target, Option<Server>), String> {
    match url {
        Some(url) => {
            let base = url.trim_end_matches('/').to_string();
            if !base.starts_with("http://") {
                return Err(format!("--target must be an http:// URL, got '{url}'"));
            }
            Ok((Target { base, token, send_origin: true }, None))
        }
        None => {
            let token = token.unwrap_or_else(random_token);
            let started = Server::start(&token, extra)?;
            let base = format!("http://127.0.0.1:{}", started.port());
            Ok((Target { base, token: Some(token), send_origin: false }, Some(started)))
        }
    }
}

pub fn build_client(target: &Target, loops: usize) -> awc::Client {
    let connector = awc::Connector::new().limit(loops.max(1) + 8).timeout(CONNECT_TIMEOUT);
    let mut builder = awc::Client::builder().connector(connector).timeout(REQUEST_TIMEOUT).disable_redirects();
    if let Some(token) = &target.token {
        builder = builder.bearer_auth(token);
    }
    if target.send_origin {
        builder = builder.add_default_header((header::ORIGIN, "http://localhost"));
    }
    builder.finish()
}

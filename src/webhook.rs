//! The built-in `webhook` job: POSTs `payload.body` as JSON to `payload.url`. Only hosts listed
//! in `PLAZA_WEBHOOK_ALLOW` may be called (default: none, so Plaza cannot be turned into a
//! request forwarder by accident), redirects are not followed (they could leave the list), and a
//! non-2xx answer or a timeout fails the attempt.
//!
//! Job handlers run on the job worker threads, which have no async runtime. Each worker thread
//! keeps a small current-thread runtime of its own and blocks on awc there: the worker pool
//! (`PLAZA_JOB_WORKERS`) is then exactly the bound on concurrent outbound calls, handlers stay
//! plain synchronous code behind one trait, and no HTTP call ever runs on an actix arbiter.

use std::cell::RefCell;
use std::time::Duration;

use awc::http::Uri;
use plaza_actors::jobs::{JobContext, JobHandler};
use serde_json::{json, Value};

/// Longest a webhook call may take, whatever the job's own timeout.
pub const MAX_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Response bytes read (for the error message of a failed call).
const MAX_RESPONSE_PREVIEW: usize = 512;

thread_local! {
    static RUNTIME: RefCell<Option<actix_web::rt::Runtime>> = const { RefCell::new(None) };
}

pub struct Webhook {
    allow: Vec<String>,
}

impl Webhook {
    /// `allow`: hosts (`example.com`) or host:port pairs (`127.0.0.1:8080`).
    pub fn new(allow: Vec<String>) -> Webhook {
        Webhook { allow: allow.into_iter().map(|h| h.to_ascii_lowercase()).collect() }
    }

    /// The URL, if its scheme is http(s) and its host is allowed.
    fn check(&self, url: &str) -> Result<Uri, String> {
        let uri: Uri = url.parse().map_err(|e| format!("\"url\" is not a URL: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err("\"url\" must be http or https".into());
        }
        let host = uri.host().ok_or("\"url\" has no host")?.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
        let with_port = format!("{host}:{port}");
        if self.allow.iter().any(|a| *a == host || *a == with_port) {
            Ok(uri)
        } else {
            Err(format!("host '{host}' is not in PLAZA_WEBHOOK_ALLOW"))
        }
    }
}

impl JobHandler for Webhook {
    fn run(&self, ctx: &JobContext, payload: &Value) -> Result<Value, String> {
        let url = payload.get("url").and_then(Value::as_str).ok_or("the payload needs a \"url\"")?;
        let uri = self.check(url)?;
        let body = payload.get("body").cloned().unwrap_or(Value::Null);
        let timeout = ctx.remaining().min(MAX_WEBHOOK_TIMEOUT);
        if timeout.is_zero() {
            return Err("no time left for the call".into());
        }
        RUNTIME.with(|cell| {
            let mut slot = cell.borrow_mut();
            let runtime = match &mut *slot {
                Some(rt) => rt,
                None => slot.insert(actix_web::rt::Runtime::new().map_err(|e| format!("cannot start an HTTP runtime: {e}"))?),
            };
            runtime.block_on(async move {
                let client = awc::Client::builder().timeout(timeout).disable_redirects().finish();
                let mut resp = client
                    .post(uri)
                    .insert_header(("User-Agent", concat!("plaza/", env!("CARGO_PKG_VERSION"))))
                    .send_json(&body)
                    .await
                    .map_err(|e| format!("webhook call failed: {e}"))?;
                let status = resp.status();
                if status.is_success() {
                    return Ok(json!({"status": status.as_u16()}));
                }
                let preview = resp.body().limit(64 * 1024).await.map(|b| b.to_vec()).unwrap_or_default();
                let preview = String::from_utf8_lossy(&preview[..preview.len().min(MAX_RESPONSE_PREVIEW)]).into_owned();
                Err(format!("webhook answered {status}: {preview}"))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_hosts_and_http_schemes() {
        let w = Webhook::new(vec!["hooks.example.com".into(), "127.0.0.1:9000".into()]);
        assert!(w.check("https://hooks.example.com/x").is_ok());
        assert!(w.check("http://127.0.0.1:9000/x").is_ok());
        assert!(w.check("http://127.0.0.1:9001/x").unwrap_err().contains("PLAZA_WEBHOOK_ALLOW"));
        assert!(w.check("http://evil.example.com/").is_err());
        assert!(w.check("http://hooks.example.com.evil.org/").is_err());
        assert!(w.check("file:///etc/passwd").is_err());
        assert!(Webhook::new(vec![]).check("http://localhost/").is_err());
    }
}

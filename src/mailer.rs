//! Delivery of magic sign-in codes. The default writes the code to the log (development); with
//! `PLAZA_MAGIC_WEBHOOK` set, the code is POSTed as `{"email","code"}` to that URL, where the
//! app's own mailer picks it up.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;

pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

pub trait CodeSender: Send + Sync {
    fn send(&self, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>>;
}

pub struct LogSender;

impl CodeSender for LogSender {
    fn send(&self, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        tracing::info!(%email, %code, "magic sign-in code (set PLAZA_MAGIC_WEBHOOK to deliver it)");
        Box::pin(async { Ok(()) })
    }
}

pub struct WebhookSender {
    pub url: String,
}

impl CodeSender for WebhookSender {
    fn send(&self, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        let (url, body) = (self.url.clone(), serde_json::json!({"email": email, "code": code}));
        Box::pin(async move {
            // awc clients are per-thread; one per delivery keeps this type Send + Sync.
            let client = Rc::new(awc::Client::builder().timeout(WEBHOOK_TIMEOUT).finish());
            let resp = client.post(&url).send_json(&body).await.map_err(|e| format!("webhook: {e}"))?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("webhook answered {}", resp.status()))
            }
        })
    }
}

pub fn from_config(webhook: Option<&str>) -> Arc<dyn CodeSender> {
    match webhook {
        Some(url) => Arc::new(WebhookSender { url: url.to_string() }),
        None => Arc::new(LogSender),
    }
}

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

    /// A code for something other than a magic sign-in; the webhook body then carries
    /// `"purpose"`. Senders that do not care deliver it like a sign-in code.
    fn send_for(&self, purpose: Purpose, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        let _ = purpose;
        self.send(email, code)
    }
}

/// What an emailed code is for (the webhook's `"purpose"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    SignIn,
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::SignIn => "sign_in",
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
        }
    }
}

pub struct LogSender;

impl CodeSender for LogSender {
    fn send(&self, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        self.send_for(Purpose::SignIn, email, code)
    }

    fn send_for(&self, purpose: Purpose, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        let purpose = purpose.as_str();
        tracing::info!(%email, %code, %purpose, "emailed code (set PLAZA_MAGIC_WEBHOOK to deliver it)");
        Box::pin(async { Ok(()) })
    }
}

pub struct WebhookSender {
    pub url: String,
}

impl CodeSender for WebhookSender {
    fn send(&self, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        self.post(serde_json::json!({"email": email, "code": code}))
    }

    fn send_for(&self, purpose: Purpose, email: &str, code: &str) -> LocalBoxFuture<'static, Result<(), String>> {
        self.post(serde_json::json!({"email": email, "code": code, "purpose": purpose.as_str()}))
    }
}

impl WebhookSender {
    fn post(&self, body: serde_json::Value) -> LocalBoxFuture<'static, Result<(), String>> {
        let url = self.url.clone();
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

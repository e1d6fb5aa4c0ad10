//! Cross-cutting request handling: access log + metrics, who the caller is, CSRF, rate limits. CORS and the
//! security headers are stock middleware configured in `lib.rs`.

pub mod caller;
pub mod csrf;
pub mod rate_limit;
pub mod request_log;

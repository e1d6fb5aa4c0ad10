//! Cross-cutting request handling: access log + metrics, CSRF, rate limiting. CORS and the
//! security headers are stock middleware configured in `lib.rs`.

pub mod csrf;
pub mod rate_limit;
pub mod request_log;

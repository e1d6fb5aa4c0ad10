//! The password policy: long enough, not absurdly long, not the email, not a common password.

use crate::error::{PlazaError, Result};

/// Longest password accepted, in bytes (argon2 takes any length; this bounds the work a
/// request can ask for and the body we hold).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A small list of the most common passwords long enough to pass the length rule (shorter ones
/// fail that anyway), one per line, compared case-insensitively.
const COMMON: &str = include_str!("common-passwords.txt");

pub fn check(password: &str, email: Option<&str>, min_chars: usize) -> Result<()> {
    let bad = |why: &str| Err(PlazaError::Validation(format!("password {why}")));
    if password.chars().count() < min_chars {
        return bad(&format!("must be at least {min_chars} characters"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return bad(&format!("must be at most {MAX_PASSWORD_BYTES} bytes"));
    }
    let lower = password.trim().to_lowercase();
    if let Some(email) = email {
        let local = email.split('@').next().unwrap_or(email);
        if lower == email || lower == local || lower.contains(email) {
            return bad("must not be the email address");
        }
    }
    let mut chars = lower.chars();
    if let Some(first) = chars.next() {
        if chars.all(|c| c == first) {
            return bad("must not repeat a single character");
        }
    }
    if COMMON.lines().any(|l| l.trim() == lower) {
        return bad("is too common; choose another");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy() {
        assert!(check("tr0ub4dor&3xyz", Some("ann@example.com"), 10).is_ok());
        assert!(check("short", None, 10).is_err());
        assert!(check("ann@example.com", Some("ann@example.com"), 10).is_err());
        assert!(check("Password123", None, 10).is_err(), "common");
        assert!(check("aaaaaaaaaaaa", None, 10).is_err());
        assert!(check(&"x".repeat(2000), None, 10).is_err());
    }
}

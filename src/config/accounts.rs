//! Account settings: the `[accounts]` table of the config file, `PLAZA_*` variables and flags
//! (same layering as the rest of `Config`), and the `[[oauth]]` provider list (file only).

use base64::Engine;
use clap::Args;
use serde::Deserialize;

/// argon2id memory cost in KiB (OWASP: 19 MiB with 2 passes).
pub const DEFAULT_ARGON2_MEMORY_KIB: u32 = 19 * 1024;
pub const DEFAULT_ARGON2_ITERATIONS: u32 = 2;
pub const DEFAULT_ARGON2_PARALLELISM: u32 = 1;
/// Threads that hash passwords; each hash holds `argon2_memory_kib` while it runs.
pub const DEFAULT_ARGON2_THREADS: usize = 1;
pub const DEFAULT_PASSWORD_MIN_LENGTH: usize = 10;
/// Failed logins for one email within the lockout window before it is locked.
pub const DEFAULT_LOGIN_MAX_FAILURES: usize = 5;
pub const DEFAULT_LOGIN_LOCKOUT_SECS: u64 = 900;
/// Credential attempts (login, register, reset, codes, TOTP) per client IP per minute.
pub const DEFAULT_LOGIN_RATE_LIMIT: u64 = 20;
pub const DEFAULT_MAX_API_KEYS: usize = 25;
pub const DEFAULT_TOTP_ISSUER: &str = "Plaza";

#[derive(Debug, Args, Default)]
pub struct AccountsArgs {
    /// argon2id memory per password hash, KiB. [default: 19456]
    #[arg(long, env = "PLAZA_ARGON2_MEMORY_KIB", global = true)]
    pub argon2_memory_kib: Option<u32>,
    /// argon2id passes. [default: 2]
    #[arg(long, env = "PLAZA_ARGON2_ITERATIONS", global = true)]
    pub argon2_iterations: Option<u32>,
    /// argon2id lanes. [default: 1]
    #[arg(long, env = "PLAZA_ARGON2_PARALLELISM", global = true)]
    pub argon2_parallelism: Option<u32>,
    /// Threads that hash passwords (off the request threads). [default: 1]
    #[arg(long, env = "PLAZA_ARGON2_THREADS", global = true)]
    pub argon2_threads: Option<usize>,
    /// Shortest password accepted, in characters. [default: 10]
    #[arg(long, env = "PLAZA_PASSWORD_MIN_LENGTH", global = true)]
    pub password_min_length: Option<usize>,
    /// Failed logins for one email before it is locked for the lockout window. [default: 5]
    #[arg(long, env = "PLAZA_LOGIN_MAX_FAILURES", global = true)]
    pub login_max_failures: Option<usize>,
    /// Window of the per-account failure count, seconds. [default: 900]
    #[arg(long, env = "PLAZA_LOGIN_LOCKOUT_SECS", global = true)]
    pub login_lockout_secs: Option<u64>,
    /// Credential attempts (password login/register/reset, codes, TOTP) per client IP per
    /// minute; 0 turns it off. [default: 20]
    #[arg(long, env = "PLAZA_LOGIN_RATE_LIMIT", global = true)]
    pub login_rate_limit: Option<u64>,
    /// 32 random bytes, base64: encrypts TOTP secrets at rest. Without it TOTP cannot be
    /// enrolled. Generate with `openssl rand -base64 32`. [default: none]
    #[arg(long, env = "PLAZA_ACCOUNTS_KEY", global = true, hide_env_values = true)]
    pub accounts_key: Option<String>,
    /// Issuer shown by authenticator apps. [default: Plaza]
    #[arg(long, env = "PLAZA_TOTP_ISSUER", global = true)]
    pub totp_issuer: Option<String>,
    /// API keys one account may hold. [default: 25]
    #[arg(long, env = "PLAZA_MAX_API_KEYS", global = true)]
    pub max_api_keys: Option<usize>,
    /// The server's public base URL (e.g. https://api.example.com): OAuth callbacks are
    /// `<public_url>/api/auth/callback/<provider>`. [default: http://<host>:<port>]
    #[arg(long, env = "PLAZA_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Where OAuth sign-ins may return to, comma separated URL prefixes (scheme, host, port
    /// and path prefix must match). [default: none]
    #[arg(long, env = "PLAZA_OAUTH_RETURN_URLS", global = true)]
    pub oauth_return_urls: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountsConfig {
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub argon2_threads: usize,
    pub password_min_length: usize,
    pub login_max_failures: usize,
    pub login_lockout_secs: u64,
    pub login_rate_limit: u64,
    pub accounts_key: Option<String>,
    pub totp_issuer: String,
    pub max_api_keys: usize,
    pub public_url: Option<String>,
    pub oauth_return_urls: Vec<String>,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        AccountsConfig {
            argon2_memory_kib: DEFAULT_ARGON2_MEMORY_KIB,
            argon2_iterations: DEFAULT_ARGON2_ITERATIONS,
            argon2_parallelism: DEFAULT_ARGON2_PARALLELISM,
            argon2_threads: DEFAULT_ARGON2_THREADS,
            password_min_length: DEFAULT_PASSWORD_MIN_LENGTH,
            login_max_failures: DEFAULT_LOGIN_MAX_FAILURES,
            login_lockout_secs: DEFAULT_LOGIN_LOCKOUT_SECS,
            login_rate_limit: DEFAULT_LOGIN_RATE_LIMIT,
            accounts_key: None,
            totp_issuer: DEFAULT_TOTP_ISSUER.into(),
            max_api_keys: DEFAULT_MAX_API_KEYS,
            public_url: None,
            oauth_return_urls: Vec::new(),
        }
    }
}

/// One `[[oauth]]` entry. `preset = "google" | "github"` fills the URLs (and scopes);
/// `issuer` (OpenID Connect) fills them from `<issuer>/.well-known/openid-configuration` at
/// start. Explicit URLs win over both.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthProviderConfig {
    pub name: String,
    pub preset: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub auth_url: Option<String>,
    pub token_url: Option<String>,
    pub userinfo_url: Option<String>,
    pub issuer: Option<String>,
    pub scopes: Option<Vec<String>>,
    /// Shown by `GET /api/auth/providers`. [default: the name]
    pub display_name: Option<String>,
}

impl AccountsConfig {
    pub fn layer(&mut self, a: &AccountsArgs) -> Result<(), String> {
        macro_rules! layer {
            ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { self.$f = v; } )* };
        }
        layer!(argon2_memory_kib, argon2_iterations, argon2_parallelism, argon2_threads, password_min_length,
               login_max_failures, login_lockout_secs, login_rate_limit, totp_issuer, max_api_keys);
        if a.accounts_key.is_some() {
            self.accounts_key = a.accounts_key.clone().filter(|k| !k.is_empty());
        }
        if a.public_url.is_some() {
            self.public_url = a.public_url.clone().filter(|u| !u.is_empty());
        }
        if let Some(list) = &a.oauth_return_urls {
            self.oauth_return_urls = list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        }
        Ok(())
    }

    /// The TOTP sealing key, decoded; an error when set but not 32 bytes of base64.
    pub fn key_bytes(&self) -> Result<Option<[u8; 32]>, String> {
        let Some(k) = &self.accounts_key else { return Ok(None) };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(k.trim())
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(k.trim()))
            .map_err(|_| "PLAZA_ACCOUNTS_KEY must be base64 (openssl rand -base64 32)".to_string())?;
        raw.try_into().map(Some).map_err(|_| "PLAZA_ACCOUNTS_KEY must decode to exactly 32 bytes".to_string())
    }

    pub fn validate(&self) -> Result<(), String> {
        self.key_bytes()?;
        plaza_actors::accounts::hasher::Hasher::new(self.settings().hash).map_err(|e| format!("PLAZA_ARGON2_*: {e}"))?;
        if self.password_min_length < 8 {
            return Err("PLAZA_PASSWORD_MIN_LENGTH must be at least 8".into());
        }
        if self.login_lockout_secs == 0 {
            return Err("PLAZA_LOGIN_LOCKOUT_SECS must be at least 1".into());
        }
        Ok(())
    }

    pub fn settings(&self) -> plaza_actors::accounts::AccountSettings {
        plaza_actors::accounts::AccountSettings {
            hash: plaza_actors::accounts::hasher::HashParams {
                memory_kib: self.argon2_memory_kib,
                iterations: self.argon2_iterations,
                parallelism: self.argon2_parallelism,
            },
            hash_threads: self.argon2_threads.max(1),
            password_min_chars: self.password_min_length,
            max_failures: self.login_max_failures.max(1),
            failure_window: std::time::Duration::from_secs(self.login_lockout_secs.max(1)),
            secret_key: self.key_bytes().ok().flatten(),
            totp_issuer: self.totp_issuer.clone(),
        }
    }

    /// Cheap hashing for tests (argon2 at full cost is slow in debug builds).
    pub fn for_tests() -> AccountsConfig {
        AccountsConfig { argon2_memory_kib: 256, argon2_iterations: 1, ..AccountsConfig::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_takes_an_accounts_table_and_oauth_providers() {
        let c: crate::config::Config = toml::from_str(
            r#"
            [accounts]
            password_min_length = 12
            accounts_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
            oauth_return_urls = ["https://app.example.com/"]

            [[oauth]]
            name = "google"
            preset = "google"
            client_id = "id"
            client_secret = "secret"

            [[oauth]]
            name = "corp"
            issuer = "https://sso.example.com"
            client_id = "corp-id"
            "#,
        )
        .unwrap();
        assert_eq!(c.accounts.password_min_length, 12);
        assert_eq!(c.accounts.argon2_memory_kib, DEFAULT_ARGON2_MEMORY_KIB);
        assert_eq!(c.accounts.key_bytes().unwrap(), Some(core::array::from_fn(|i| i as u8)));
        assert_eq!(c.oauth.len(), 2);
        assert_eq!(c.oauth[1].issuer.as_deref(), Some("https://sso.example.com"));
        assert!(c.validate().is_ok());
        let bad = AccountsConfig { accounts_key: Some("c2hvcnQ=".into()), ..AccountsConfig::default() };
        assert!(bad.validate().unwrap_err().contains("32 bytes"));
        let weak = AccountsConfig { argon2_memory_kib: 1, ..AccountsConfig::default() };
        assert!(weak.validate().is_err());
    }
}

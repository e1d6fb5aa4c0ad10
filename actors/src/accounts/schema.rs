//! The accounts tables, and the session columns accounts add. Run at start on the setup
//! connection, after the store's own migration and before anything loads.

use rusqlite::Connection;

use crate::error::Result;

const DDL: &str = "
-- One row per account. email is normalised (trimmed, lower-cased); password_hash is an argon2id
-- PHC string (NULL for accounts that only sign in with a provider); totp_secret is encrypted.
CREATE TABLE IF NOT EXISTS _plaza_users (
    id TEXT PRIMARY KEY, email TEXT UNIQUE, password_hash TEXT, verified INTEGER NOT NULL DEFAULT 0,
    totp_secret BLOB, totp_enabled INTEGER NOT NULL DEFAULT 0, totp_last_step INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL, last_login_at INTEGER);
-- Provider identities linked to accounts (provider's subject id, never its tokens).
CREATE TABLE IF NOT EXISTS _plaza_identities (
    provider TEXT NOT NULL, subject TEXT NOT NULL, user_id TEXT NOT NULL, email TEXT,
    created_at INTEGER NOT NULL, PRIMARY KEY (provider, subject));
CREATE INDEX IF NOT EXISTS idx_plaza_identities_user ON _plaza_identities (user_id);
-- TOTP backup codes, SHA-256 of each; a used code's row is deleted.
CREATE TABLE IF NOT EXISTS _plaza_backup_codes (
    user_id TEXT NOT NULL, code_hash BLOB NOT NULL, PRIMARY KEY (user_id, code_hash));
-- OAuth sign-ins under way: state (hashed), PKCE verifier, where to return; single use, 10 min.
CREATE TABLE IF NOT EXISTS _plaza_oauth_states (
    state_hash BLOB PRIMARY KEY, provider TEXT NOT NULL, pkce_verifier TEXT NOT NULL,
    return_to TEXT NOT NULL, guest_id TEXT, expires_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS idx_plaza_sessions_user ON _plaza_sessions (user_id);
";

/// Columns accounts add to `_plaza_sessions` (older databases lack them).
const SESSION_COLUMNS: &[(&str, &str)] =
    &[("last_used_at", "INTEGER"), ("user_agent", "TEXT"), ("ip", "TEXT"), ("kind", "TEXT"), ("name", "TEXT")];

pub fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch("BEGIN")?;
    let done = (|| -> Result<()> {
        conn.execute_batch(DDL)?;
        let existing = conn
            .prepare("PRAGMA table_info(_plaza_sessions)")?
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (col, ty) in SESSION_COLUMNS {
            if !existing.iter().any(|c| c == col) {
                conn.execute_batch(&format!("ALTER TABLE _plaza_sessions ADD COLUMN {col} {ty}"))?;
            }
        }
        Ok(())
    })();
    match done {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    Ok(())
}

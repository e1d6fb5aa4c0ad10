//! Small secrets helpers for accounts: random tokens and codes, SHA-256, and sealing TOTP
//! secrets at rest (XChaCha20-Poly1305 under `PLAZA_ACCOUNTS_KEY`, bound to the user id).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

use crate::error::{PlazaError, Result};

pub fn random<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| PlazaError::Internal(format!("OS randomness unavailable: {e}")))?;
    Ok(buf)
}

pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// A 256-bit random token, base64url (mfa tokens, OAuth state).
pub fn token() -> Result<String> {
    Ok(URL_SAFE_NO_PAD.encode(random::<32>()?))
}

/// A uniformly random `digits`-digit code.
pub fn digits(digits: u32) -> Result<String> {
    let modulus = 10u64.pow(digits);
    // Rejection sampling: no modulo bias.
    let zone = u64::MAX - u64::MAX % modulus;
    loop {
        let n = u64::from_le_bytes(random::<8>()?);
        if n < zone {
            return Ok(format!("{:0width$}", n % modulus, width = digits as usize));
        }
    }
}

/// A backup code: 10 characters from an alphabet without look-alikes, shown as `xxxxx-xxxxx`.
pub fn backup_code() -> Result<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let bytes = random::<10>()?;
    let s: String = bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect();
    Ok(format!("{}-{}", &s[..5], &s[5..]))
}

/// How a presented backup code is compared: dashes and spaces ignored, lower-cased.
pub fn backup_code_hash(code: &str) -> [u8; 32] {
    let clean: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_lowercase();
    sha256(&[b"plaza-backup-code:", clean.as_bytes()])
}

/// Seals and opens secrets with the accounts key.
#[derive(Clone)]
pub struct SecretBox {
    key: [u8; 32],
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        SecretBox { key }
    }

    /// nonce (24 bytes) || ciphertext+tag; `aad` (the user id) must match when opening.
    pub fn seal(&self, plain: &[u8], aad: &str) -> Result<Vec<u8>> {
        let nonce = random::<24>()?;
        let cipher = XChaCha20Poly1305::new((&self.key).into());
        let sealed = cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad: aad.as_bytes() })
            .map_err(|_| PlazaError::Internal("could not encrypt a secret".into()))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>> {
        if sealed.len() < 24 {
            return Err(PlazaError::Internal("sealed secret too short".into()));
        }
        let (nonce, body) = sealed.split_at(24);
        XChaCha20Poly1305::new((&self.key).into())
            .decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad: aad.as_bytes() })
            .map_err(|_| PlazaError::Internal("a stored secret does not open with PLAZA_ACCOUNTS_KEY (was the key changed?)".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_binds_the_user() {
        let b = SecretBox::new([7; 32]);
        let sealed = b.seal(b"JBSWY3DPEHPK3PXP", "u1").unwrap();
        assert_eq!(b.open(&sealed, "u1").unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(b.open(&sealed, "u2").is_err());
        assert!(SecretBox::new([8; 32]).open(&sealed, "u1").is_err());
        assert_eq!(digits(6).unwrap().len(), 6);
        assert_eq!(backup_code_hash("ABCDE-fghjk"), backup_code_hash("abcde fghjk"));
    }
}

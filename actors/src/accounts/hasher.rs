//! Password hashing off the actor threads: argon2id is deliberately slow and memory-hungry, so
//! it runs on a `SyncArbiter` of its own threads (`PLAZA_ARGON2_THREADS`), never on an arbiter
//! that serves requests or other actors.

use actix::prelude::*;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::{PlazaError, Result};

/// argon2id cost. The defaults are OWASP's first recommendation (19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams { memory_kib: 19 * 1024, iterations: 2, parallelism: 1 }
    }
}

pub struct Hasher {
    argon: Argon2<'static>,
}

impl Hasher {
    pub fn new(p: HashParams) -> Result<Hasher> {
        let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
            .map_err(|e| PlazaError::Validation(format!("argon2 parameters: {e}")))?;
        Ok(Hasher { argon: Argon2::new(Algorithm::Argon2id, Version::V0x13, params) })
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh 16-byte salt from the OS.
    pub fn hash(&self, password: &str) -> Result<String> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| PlazaError::Internal(format!("OS randomness unavailable: {e}")))?;
        let salt = SaltString::encode_b64(&salt).map_err(|e| PlazaError::Internal(format!("salt: {e}")))?;
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PlazaError::Internal(format!("argon2: {e}")))
    }

    /// Whether `password` matches `hash` (with the parameters recorded in the hash). A hash
    /// that does not parse matches nothing.
    pub fn verify(&self, hash: &str, password: &str) -> bool {
        PasswordHash::new(hash).is_ok_and(|h| self.argon.verify_password(password.as_bytes(), &h).is_ok())
    }
}

/// Whether `hash` was made with other parameters than `p` (so a login should re-hash it).
pub fn is_stale(hash: &str, p: HashParams) -> bool {
    let Ok(h) = PasswordHash::new(hash) else { return false };
    let Ok(params) = Params::try_from(&h) else { return false };
    h.algorithm.as_str() != "argon2id"
        || params.m_cost() != p.memory_kib
        || params.t_cost() != p.iterations
        || params.p_cost() != p.parallelism
}

impl Actor for Hasher {
    type Context = SyncContext<Self>;
}

#[derive(Message)]
#[rtype(result = "Result<String>")]
pub struct HashPassword {
    pub password: String,
}

impl Handler<HashPassword> for Hasher {
    type Result = Result<String>;
    fn handle(&mut self, msg: HashPassword, _: &mut SyncContext<Self>) -> Result<String> {
        self.hash(&msg.password)
    }
}

#[derive(Message)]
#[rtype(result = "bool")]
pub struct VerifyPassword {
    pub hash: String,
    pub password: String,
}

impl Handler<VerifyPassword> for Hasher {
    type Result = bool;
    fn handle(&mut self, msg: VerifyPassword, _: &mut SyncContext<Self>) -> bool {
        self.verify(&msg.hash, &msg.password)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let h = Hasher::new(HashParams { memory_kib: 64, iterations: 1, parallelism: 1 }).unwrap();
        let a = h.hash("correct horse battery").unwrap();
        let b = h.hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "fresh salt each time");
        assert!(h.verify(&a, "correct horse battery"));
        assert!(!h.verify(&a, "correct horse battery!"));
        assert!(!h.verify("not a hash", "x"));
        assert!(!is_stale(&a, HashParams { memory_kib: 64, iterations: 1, parallelism: 1 }));
        assert!(is_stale(&a, HashParams { memory_kib: 128, iterations: 1, parallelism: 1 }));
        assert!(!is_stale("not a hash", HashParams::default()));
    }
}

//! Randomness without a crate: admin tokens for spawned servers and seeds from std's randomly
//! keyed hasher, and a tiny generator (SplitMix64) for picking ids and offsets.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A 256-bit random hex token from std's randomly keyed hasher (no extra crate needed).
pub fn random_token() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    (0..4u64)
        .map(|i| {
            let mut h = RandomState::new().build_hasher();
            h.write_u64(i);
            h.write_u128(now);
            h.write_u32(std::process::id());
            format!("{:016x}", h.finish())
        })
        .collect()
}

pub fn seed(thread: usize, loop_index: usize) -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_usize(thread);
    h.write_usize(loop_index);
    h.finish()
}

/// SplitMix64: a tiny, good-enough generator for picking ids and offsets.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

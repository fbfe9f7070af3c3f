//! A `BuildHasher` for maps whose keys are already unpredictable 128-bit
//! hashes of client data (xxh3 or SipHash under a secret made at start-up):
//! clients can neither choose nor predict those keys, so hashing them again
//! with SipHash (~130-500 instructions a lookup) buys no protection against
//! flooding. The key's bits are the hash.

use std::hash::{BuildHasher, Hasher};

#[derive(Debug, Clone, Copy, Default)]
pub struct PreHashed;

impl BuildHasher for PreHashed {
    type Hasher = PreHashedKey;

    fn build_hasher(&self) -> PreHashedKey {
        PreHashedKey(0)
    }
}

#[derive(Debug, Default)]
pub struct PreHashedKey(u64);

impl Hasher for PreHashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `u128` keys take `write_u128`; `[u8; 16]` keys come here as their
        // bytes (after their length, which is the same for every key).
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn distinct_keys_stay_distinct_entries() {
        let mut m: HashMap<u128, u32, PreHashed> = HashMap::default();
        for i in 1..=1000u32 {
            // Keys whose halves swap: the same hash, distinct entries.
            m.insert(u128::from(i) << 64, i);
            m.insert(u128::from(i), i + 1000);
        }
        assert_eq!(m.len(), 2000);
        assert_eq!(m[&(7u128 << 64)], 7);
        assert_eq!(m[&7u128], 1007);
    }
}

//! A bounded cache of verification results keyed by a MAC of the
//! credential: never the credential itself, and never an unkeyed or
//! non-cryptographic hash (a collision would be an authentication bypass).
//!
//! The MAC is SipHash-2-4 with 128-bit output under a random key made at
//! start-up and never shown: a keyed PRF, so finding a credential whose key
//! equals a cached one's takes about 2^128 / (cached entries) guesses, and
//! the keys say nothing about the credentials. It replaced SHA-256, which
//! cost ~8,500 instructions per request for a 200-byte token (callgrind,
//! BENCHMARKS.md); SipHash needs a few hundred.

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use siphasher::sip128::{Hasher128, SipHasher24};
use tokio::time::Instant;

pub type Key = [u8; 16];

/// The process's MAC key, from the system's CSPRNG.
static MAC_KEY: LazyLock<[u8; 16]> = LazyLock::new(|| {
    let mut key = [0u8; 16];
    aws_lc_rs::rand::fill(&mut key).expect("the system's random source works");
    key
});

pub fn key_of(parts: &[&[u8]]) -> Key {
    let mut mac = SipHasher24::new_with_key(&MAC_KEY);
    for p in parts {
        // Length-prefixed: ("ab", "c") and ("a", "bc") differ.
        mac.write(&(p.len() as u64).to_le_bytes());
        mac.write(p);
    }
    mac.finish128().as_bytes()
}

#[derive(Debug)]
pub struct TtlCache<V> {
    entries: Mutex<HashMap<Key, (V, Instant)>>,
    capacity: usize,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(capacity: usize) -> TtlCache<V> {
        TtlCache { entries: Mutex::new(HashMap::new()), capacity }
    }

    pub fn get(&self, key: &Key) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            _ => None,
        }
    }

    pub fn insert(&self, key: Key, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            // Full: drop what expired; if that is not enough, drop a tenth
            // (arbitrary entries: a miss only costs a fresh verification).
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= self.capacity {
                let drop_n = (self.capacity / 10).max(1);
                let victims: Vec<Key> = entries.keys().take(drop_n).copied().collect();
                for k in victims {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, (value, now + ttl));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_the_parts_and_differ_for_any_change() {
        assert_eq!(key_of(&[b"token"]), key_of(&[b"token"]));
        assert_ne!(key_of(&[b"ab", b"c"]), key_of(&[b"a", b"bc"]));
        assert_ne!(key_of(&[b"token"]), key_of(&[b"tokem"]));
        assert_ne!(key_of(&[b""]), key_of(&[]));
    }

    #[tokio::test(start_paused = true)]
    async fn expires_and_stays_bounded() {
        let c = TtlCache::new(10);
        c.insert(key_of(&[b"a"]), 1, Duration::from_secs(5));
        assert_eq!(c.get(&key_of(&[b"a"])), Some(1));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(c.get(&key_of(&[b"a"])), None);
        for i in 0..100u32 {
            c.insert(key_of(&[&i.to_be_bytes()]), i, Duration::from_secs(60));
        }
        assert!(c.len() <= 10);
        assert_ne!(key_of(&[b"ab", b"c"]), key_of(&[b"a", b"bc"]));
    }
}

//! Bounded caches of verification results, in two kinds:
//!
//! - `TtlCache` is keyed by a MAC of the credential, never the credential
//!   itself, so it may hold what the gateway must not keep: passwords (Basic)
//!   and tokens clients send at will (introspection caches inactive tokens
//!   too). The MAC is SipHash-2-4 with 128-bit output under a random key made
//!   at start-up and never shown: a keyed PRF, so a credential whose key
//!   equals a cached one's takes about 2^128 / (cached entries) guesses.
//! - `TokenCache` holds verified JWTs themselves, as Envoy's JWT cache does:
//!   an entry is found by a seeded xxh3 hash (fast: a collision only makes
//!   two tokens share a slot, never one pass for the other) and used only if
//!   the stored token equals the presented one, compared in constant time.
//!   Only tokens the gateway verified get in, so clients cannot fill it; its
//!   bytes are bounded on top of its entries. The whole lookup (hash, lock,
//!   probe, comparison) costs ~400 instructions for a 200-byte token; the
//!   SipHash MAC alone cost ~1,050, and the SHA-256 before it ~8,500
//!   (callgrind, BENCHMARKS.md).
//!
//! Neither kind prints what it holds (`Debug` shows sizes only).

use std::collections::HashMap;
use std::hash::Hasher;
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use siphasher::sip128::{Hasher128, SipHasher24};
use tokio::time::Instant;

use crate::policy::prehashed::PreHashed;

pub type Key = u128;

/// The process's secrets, from the system's CSPRNG: the MAC key and the
/// token hash's seed.
static SECRETS: LazyLock<([u8; 16], u64)> = LazyLock::new(|| {
    let mut key = [0u8; 24];
    aws_lc_rs::rand::fill(&mut key).expect("the system's random source works");
    let (mac, seed) = key.split_at(16);
    (mac.try_into().expect("16 bytes"), u64::from_le_bytes(seed.try_into().expect("8 bytes")))
});

pub fn key_of(parts: &[&[u8]]) -> Key {
    let mut mac = SipHasher24::new_with_key(&SECRETS.0);
    for p in parts {
        // Length-prefixed: ("ab", "c") and ("a", "bc") differ.
        mac.write(&(p.len() as u64).to_le_bytes());
        mac.write(p);
    }
    mac.finish128().as_u128()
}

/// One cached answer; `token` is empty in a `TtlCache`.
struct Entry<V> {
    value: V,
    until: Instant,
    token: Box<[u8]>,
}

/// The map both kinds share, bounded in entries and in token bytes.
struct Bounded<V> {
    entries: HashMap<Key, Entry<V>, PreHashed>,
    token_bytes: usize,
}

struct Store<V> {
    inner: Mutex<Bounded<V>>,
    capacity: usize,
    max_token_bytes: usize,
}

impl<V: Clone> Store<V> {
    fn new(capacity: usize, max_token_bytes: usize) -> Store<V> {
        let inner = Bounded { entries: HashMap::default(), token_bytes: 0 };
        Store { inner: Mutex::new(inner), capacity, max_token_bytes }
    }

    fn lock(&self) -> MutexGuard<'_, Bounded<V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, key: Key, token: &[u8]) -> Option<V> {
        let inner = self.lock();
        let entry = inner.entries.get(&key)?;
        (entry.until > Instant::now() && same_bytes(&entry.token, token)).then(|| entry.value.clone())
    }

    fn insert(&self, key: Key, value: V, ttl: Duration, token: &[u8]) {
        if ttl.is_zero() || token.len() > self.max_token_bytes {
            return;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(old) = inner.entries.remove(&key) {
            inner.token_bytes -= old.token.len();
        }
        let full =
            |b: &Bounded<V>| b.entries.len() >= self.capacity || b.token_bytes + token.len() > self.max_token_bytes;
        if full(inner) {
            // Drop what expired; if that is not enough, drop a tenth at a time
            // (arbitrary entries: a miss only costs a fresh verification).
            inner.entries.retain(|_, e| e.until > now);
            inner.token_bytes = inner.entries.values().map(|e| e.token.len()).sum();
            while full(inner) && !inner.entries.is_empty() {
                let drop_n = (inner.entries.len() / 10).max(1);
                let victims: Vec<Key> = inner.entries.keys().take(drop_n).copied().collect();
                for k in victims {
                    if let Some(old) = inner.entries.remove(&k) {
                        inner.token_bytes -= old.token.len();
                    }
                }
            }
        }
        inner.token_bytes += token.len();
        inner.entries.insert(key, Entry { value, until: now + ttl, token: token.into() });
    }

    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl<V> std::fmt::Debug for Store<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

/// Equal contents, in a time that depends on the lengths only (a word at
/// a time: a byte-wise constant-time loop costs ~5 instructions a byte).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_rest) = a.as_chunks::<8>();
    let (b_words, b_rest) = b.as_chunks::<8>();
    let mut diff = 0u64;
    for (x, y) in a_words.iter().zip(b_words) {
        diff |= u64::from_ne_bytes(*x) ^ u64::from_ne_bytes(*y);
    }
    for (x, y) in a_rest.iter().zip(b_rest) {
        diff |= u64::from(x ^ y);
    }
    std::hint::black_box(diff) == 0
}

/// Answers keyed by a MAC of the credential (`key_of`).
#[derive(Debug)]
pub struct TtlCache<V>(Store<V>);

impl<V: Clone> TtlCache<V> {
    pub fn new(capacity: usize) -> TtlCache<V> {
        TtlCache(Store::new(capacity, 0))
    }

    pub fn get(&self, key: &Key) -> Option<V> {
        self.0.get(*key, &[])
    }

    pub fn insert(&self, key: Key, value: V, ttl: Duration) {
        self.0.insert(key, value, ttl, &[]);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Verified tokens, kept whole and matched exactly (see the module's doc).
#[derive(Debug)]
pub struct TokenCache<V>(Store<V>);

impl<V: Clone> TokenCache<V> {
    /// At most `capacity` tokens and `max_token_bytes` of them.
    pub fn new(capacity: usize, max_token_bytes: usize) -> TokenCache<V> {
        TokenCache(Store::new(capacity, max_token_bytes))
    }

    /// 64 bits are plenty: two tokens of one slot only evict each other.
    fn slot(token: &[u8]) -> Key {
        Key::from(xxhash_rust::xxh3::xxh3_64_with_seed(token, SECRETS.1))
    }

    pub fn get(&self, token: &[u8]) -> Option<V> {
        self.0.get(Self::slot(token), token)
    }

    /// Caches `value` for `token`, which the caller has just verified.
    pub fn insert(&self, token: &[u8], value: V, ttl: Duration) {
        self.0.insert(Self::slot(token), value, ttl, token);
    }

    pub fn len(&self) -> usize {
        self.0.len()
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

    #[test]
    fn bytes_compare_equal_only_when_they_are() {
        let long = b"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
        assert!(same_bytes(long, long));
        assert!(same_bytes(b"", b""));
        for i in 0..long.len() {
            let mut other = *long;
            other[i] ^= 1;
            assert!(!same_bytes(long, &other), "a change at {i}");
        }
        assert!(!same_bytes(long, &long[..long.len() - 1]));
        assert!(!same_bytes(b"abc", b"abd"));
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
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_match_exactly_expire_and_stay_within_their_bytes() {
        let c = TokenCache::new(1000, 1000);
        c.insert(b"header.claims.sig", 1, Duration::from_secs(5));
        assert_eq!(c.get(b"header.claims.sig"), Some(1));
        assert_eq!(c.get(b"header.claims.sih"), None);
        assert_eq!(c.get(b"header.claims.si"), None);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(c.get(b"header.claims.sig"), None);
        // 100-byte tokens: at most ten fit in 1,000 bytes.
        for i in 0..50u8 {
            c.insert(&[i; 100], u32::from(i), Duration::from_secs(60));
            assert!(c.0.lock().token_bytes <= 1000);
        }
        assert!(c.len() <= 10);
        assert_eq!(c.get(&[49; 100]), Some(49), "the newest stays");
        let inner = c.0.lock();
        assert_eq!(inner.token_bytes, inner.entries.values().map(|e| e.token.len()).sum::<usize>());
    }

    #[test]
    fn what_a_cache_holds_is_not_printed() {
        let c = TokenCache::new(10, 1000);
        c.insert(b"secret-token", 1, Duration::from_secs(60));
        assert!(!format!("{c:?}").contains("secret"));
    }
}

//! A bounded cache of verification results keyed by a SHA-256 of the
//! credential (never the credential itself, and never a non-cryptographic
//! hash: a collision would be an authentication bypass).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub type Key = [u8; 32];

pub fn key_of(parts: &[&[u8]]) -> Key {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
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

//! The embedded store: sharded, lock-light, bounded. Keys are 128-bit
//! seeded hashes of the limit's scope and the client's key (the raw key is
//! not kept). A GCRA entry whose TAT has passed is equivalent to no entry,
//! so idle keys are evicted without changing any decision; under an attack
//! of millions of distinct keys the cap holds by evicting, from the limit
//! holding the most keys, the entries closest to idle: a flood of one
//! limit's keys (a header a client chooses) evicts that limit's counters,
//! not the counter of a client another limit holds back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::gcra::{Decision, Gcra};
use crate::policy::prehashed::PreHashed;

const SHARDS: usize = 64;

pub struct MemoryStore {
    origin: Instant,
    seed: u64,
    cap_per_shard: usize,
    /// Rate counters: key → (TAT, the limit's tag).
    gcra: Vec<Shard<(u64, u32)>>,
    /// Quota counters: key → (end of the window in Unix seconds, count,
    /// the limit's tag).
    quota: Vec<Shard<(u64, u64, u32)>>,
    /// In-flight counters for concurrency limits.
    in_flight: Vec<Shard<u32>>,
    pub evictions: AtomicU64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("cap_per_shard", &self.cap_per_shard).finish_non_exhaustive()
    }
}

/// One lock's worth of counters.
type Shard<V> = Mutex<HashMap<u128, V, PreHashed>>;

fn shards<V>() -> Vec<Shard<V>> {
    (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    pub fn max_keys(&self) -> usize {
        self.cap_per_shard * SHARDS
    }

    pub fn new(max_keys: usize) -> MemoryStore {
        MemoryStore {
            origin: Instant::now(),
            seed: rand::random(),
            cap_per_shard: (max_keys / SHARDS).max(16),
            gcra: shards(),
            quota: shards(),
            in_flight: shards(),
            evictions: AtomicU64::new(0),
        }
    }

    /// The key of a counter identity in this store. Seeded per process, so
    /// clients cannot aim collisions at someone else's counter.
    pub fn key(&self, id: &[u8]) -> u128 {
        xxhash_rust::xxh3::xxh3_128_with_seed(id, self.seed)
    }

    /// Nanoseconds on the store's monotonic clock (tokio's: tests can pause it).
    pub fn now(&self) -> u64 {
        Instant::now().duration_since(self.origin).as_nanos() as u64
    }

    fn shard(key: u128) -> usize {
        (key as usize) % SHARDS
    }

    /// Counts a request of the limit tagged `limit` (which limit a key
    /// belongs to, for eviction only) against `gcra`.
    pub fn check(&self, key: u128, limit: u32, gcra: &Gcra) -> Decision {
        let now = self.now();
        let mut shard = lock(&self.gcra[Self::shard(key)]);
        // A known key: one probe (the usual case for a busy client).
        if let Some((tat, _)) = shard.get_mut(&key) {
            let (decision, new_tat) = gcra.check(*tat, now);
            if let Some(t) = new_tat {
                *tat = t;
            }
            return decision;
        }
        let (decision, new_tat) = gcra.check(0, now);
        if let Some(t) = new_tat {
            if shard.len() >= self.cap_per_shard {
                self.make_room(&mut shard, now);
            }
            shard.insert(key, (t, limit));
        }
        decision
    }

    fn make_room(&self, shard: &mut HashMap<u128, (u64, u32), PreHashed>, now: u64) {
        // Idle keys first; if every key is active, those nearest to idle.
        let evicted = make_room(shard, self.cap_per_shard, |(tat, _)| *tat > now, |(tat, _)| *tat, |(_, l)| *l);
        self.evictions.fetch_add(evicted as u64, Ordering::Relaxed);
    }

    /// Counts one request against a quota of `limit` in the window that
    /// ends at `window_end` (Unix seconds; `now` is the current one);
    /// refused requests are not counted. Returns (allowed, used). `tag`
    /// says which limit the key belongs to, for eviction.
    pub fn quota(&self, key: u128, tag: u32, window_end: u64, now: u64, limit: u64) -> (bool, u64) {
        let mut shard = lock(&self.quota[Self::shard(key)]);
        if !shard.contains_key(&key) && shard.len() >= self.cap_per_shard {
            // Counters of past windows are worth nothing: drop them first;
            // then those that counted least.
            let evicted =
                make_room(&mut shard, self.cap_per_shard, |(end, ..)| *end > now, |(_, used, _)| *used, |(.., t)| *t);
            self.evictions.fetch_add(evicted as u64, Ordering::Relaxed);
        }
        let entry = shard.entry(key).or_insert((window_end, 0, tag));
        if entry.0 != window_end {
            *entry = (window_end, 0, tag);
        }
        if entry.1 >= limit {
            return (false, entry.1);
        }
        entry.1 += 1;
        (true, entry.1)
    }

    /// Takes an in-flight slot if fewer than `max` are taken.
    pub fn acquire(&self, key: u128, max: u32) -> bool {
        let mut shard = lock(&self.in_flight[Self::shard(key)]);
        let n = shard.entry(key).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn release_slot(&self, key: u128) {
        let mut shard = lock(&self.in_flight[Self::shard(key)]);
        if let Some(n) = shard.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                shard.remove(&key);
            }
        }
    }

    /// Keys held, of every kind: rate, quota and concurrency counters
    /// (each kind is held to `max_keys`).
    pub fn len(&self) -> usize {
        let gcra: usize = self.gcra.iter().map(|s| lock(s).len()).sum();
        let quota: usize = self.quota.iter().map(|s| lock(s).len()).sum();
        gcra + quota + self.in_flight.iter().map(|s| lock(s).len()).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Share of a full shard freed at once when every key in it still
/// counts: a scan of the shard then pays for this many new keys, not one
/// (a flood of distinct keys scanned a whole shard per request).
const FREED_AT_ONCE: usize = 16;

/// Makes room in a full shard: drops the entries `keep` refuses, and if
/// that frees less than `1/FREED_AT_ONCE` of the shard (a steady flood,
/// where each scan finds only the few keys just gone idle), more until
/// that share is free: first the entries of the limit (`limit`) holding
/// the most of the shard, those with the lowest `rank` first, then the
/// others by `rank` (exactly the share, ties taken in table order).
/// Returns how many entries went.
fn make_room<V>(
    shard: &mut HashMap<u128, V, PreHashed>,
    cap: usize,
    keep: impl Fn(&V) -> bool,
    rank: impl Fn(&V) -> u64,
    limit: impl Fn(&V) -> u32,
) -> usize {
    let before = shard.len();
    shard.retain(|_, v| keep(v));
    let target = cap - (cap / FREED_AT_ONCE).max(1);
    if shard.len() > target {
        let mut held: HashMap<u32, usize> = HashMap::new();
        for v in shard.values() {
            *held.entry(limit(v)).or_default() += 1;
        }
        // The largest holder; of equal ones, the smallest tag (a fixed choice).
        let largest = held.iter().max_by_key(|&(tag, n)| (*n, std::cmp::Reverse(*tag))).map_or(0, |(t, _)| *t);
        let rank = |v: &V| (u128::from(limit(v) != largest) << 64) | u128::from(rank(v));
        let free = shard.len() - target;
        let mut ranks: Vec<u128> = shard.values().map(rank).collect();
        let (_, &mut threshold, _) = ranks.select_nth_unstable(free - 1);
        let mut ties = free - ranks.iter().filter(|&&r| r < threshold).count();
        shard.retain(|_, v| match rank(v).cmp(&threshold) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal if ties > 0 => {
                ties -= 1;
                false
            }
            _ => true,
        });
    }
    before - shard.len()
}

impl crate::policy::ctx::Releases for MemoryStore {
    fn release(&self, key: u128) {
        self.release_slot(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn bounded_under_many_keys_and_idle_keys_go_first() {
        let store = MemoryStore::new(SHARDS * 16);
        let g = Gcra::new(1, 1_000_000_000, 0, None);
        let hot = store.key(b"hot");
        assert!(store.check(hot, 0, &g).allowed);
        for i in 0..100_000u32 {
            store.check(store.key(&i.to_le_bytes()), 0, &g);
        }
        assert!(store.len() <= SHARDS * 16, "{}", store.len());
        tokio::time::advance(Duration::from_millis(500)).await;
        // Entries from the flood are idle after 1 s; the store keeps working.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(store.check(hot, 0, &g).allowed);
    }

    #[test]
    fn a_full_shard_frees_a_share_at_once_nearest_to_idle_first() {
        let one = |_: &u64| 0;
        let mut shard: HashMap<u128, u64, PreHashed> = HashMap::default();
        for k in 0..64u128 {
            shard.insert(k, 1000 + k as u64);
        }
        // Every entry active: 64 / 16 = 4 go, those with the earliest TAT.
        assert_eq!(make_room(&mut shard, 64, |_| true, |tat| *tat, one), 4);
        assert!((0..4).all(|k| !shard.contains_key(&k)) && shard.len() == 60);
        // Equal ranks: exactly the share goes, not every tie.
        let mut same: HashMap<u128, u64, PreHashed> = (0..64u128).map(|k| (k, 7)).collect();
        assert_eq!(make_room(&mut same, 64, |_| true, |v| *v, one), 4);
        // Idle entries free a share: only they go.
        assert_eq!(make_room(&mut shard, 60, |tat| *tat >= 1010, |tat| *tat, one), 6);
        // A few idle ones are not enough: the nearest to idle go with them, to a share.
        let mut flood: HashMap<u128, u64, PreHashed> = (0..64u128).map(|k| (k, 1000 + k as u64)).collect();
        assert_eq!(make_room(&mut flood, 64, |tat| *tat > 1000, |tat| *tat, one), 4);
        assert_eq!(flood.len(), 60);
    }

    /// A flood of one limit's keys evicts that limit's counters: another
    /// limit's client nearest to idle (a rate-limited client whose TAT is
    /// the earliest) keeps its counter, and so its refusals.
    #[test]
    fn the_limit_holding_the_most_keys_gives_them_up_first() {
        // Keys 0..4 of limit 1 hold the earliest TATs; 60 of limit 2 flood.
        let mut shard: HashMap<u128, (u64, u32), PreHashed> =
            (0..64u128).map(|k| (k, (1000 + k as u64, if k < 4 { 1 } else { 2 }))).collect();
        assert_eq!(make_room(&mut shard, 64, |_| true, |(tat, _)| *tat, |(_, l)| *l), 4);
        assert!((0..4).all(|k| shard.contains_key(&k)), "limit 1 kept its counters");
        assert!((4..8).all(|k| !shard.contains_key(&k)), "the flood's earliest went");
    }

    /// Through the store: a client refused by one limit stays refused
    /// while another limit's keys flood every shard.
    #[tokio::test(start_paused = true)]
    async fn a_flood_of_one_limit_leaves_another_limits_refusal() {
        let store = MemoryStore::new(SHARDS * 16);
        let slow = Gcra::new(1, 60_000_000_000, 2, None);
        let victim = store.key(b"victim");
        let seen: Vec<bool> = (0..4).map(|_| store.check(victim, 1, &slow).allowed).collect();
        assert_eq!(seen, [true, true, true, false]);
        for i in 0..50_000u32 {
            let key = store.key(&i.to_le_bytes());
            for _ in 0..3 {
                store.check(key, 2, &slow);
            }
        }
        assert!(!store.check(victim, 1, &slow).allowed, "the victim's counter was evicted");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_with_a_paused_clock() {
        let store = MemoryStore::new(1000);
        let g = Gcra::new(2, 1_000_000_000, 0, None);
        let k = store.key(b"client");
        assert!(store.check(k, 0, &g).allowed);
        assert!(!store.check(k, 0, &g).allowed);
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(store.check(k, 0, &g).allowed);
    }

    #[test]
    fn quota_resets_with_the_window_and_refusals_are_free() {
        let store = MemoryStore::new(1000);
        let k = store.key(b"c");
        assert_eq!(store.quota(k, 0, 60, 1, 2), (true, 1));
        assert_eq!(store.quota(k, 0, 60, 2, 2), (true, 2));
        assert_eq!(store.quota(k, 0, 60, 3, 2), (false, 2));
        assert_eq!(store.quota(k, 0, 60, 59, 2), (false, 2));
        assert_eq!(store.quota(k, 0, 120, 60, 2), (true, 1));
    }

    #[test]
    fn concurrency_slots() {
        let store = MemoryStore::new(1000);
        let k = store.key(b"c");
        assert!(store.acquire(k, 2));
        assert!(store.acquire(k, 2));
        assert!(!store.acquire(k, 2));
        store.release_slot(k);
        assert!(store.acquire(k, 2));
    }
}

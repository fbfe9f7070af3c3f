//! Two counters over a sliding time window (requests and retries, requests
//! and failures), in ten buckets of atomics: no lock per request. A bucket
//! whose slot has passed is reset by the first writer that sees it; two
//! writers racing at a bucket's turn can lose a count or two, which a
//! budget or a ratio tolerates.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

const BUCKETS: usize = 10;

#[derive(Debug, Default)]
struct Bucket {
    /// The slot (time / bucket width) these counts belong to, plus one (0: never used).
    slot: AtomicU64,
    a: AtomicU64,
    b: AtomicU64,
}

#[derive(Debug)]
pub struct Window {
    origin: Instant,
    bucket_ms: u64,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    /// A window of `length` (at least 10 ms), counted from `origin`.
    pub fn new(length: Duration, origin: Instant) -> Window {
        let bucket_ms = (length.as_millis() as u64 / BUCKETS as u64).max(1);
        Window { origin, bucket_ms, buckets: Default::default() }
    }

    fn slot(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64 / self.bucket_ms + 1
    }

    /// Adds `a` and `b` to the counts at `now`.
    pub fn add(&self, now: Instant, a: u64, b: u64) {
        let slot = self.slot(now);
        let bucket = &self.buckets[slot as usize % BUCKETS];
        let seen = bucket.slot.load(Ordering::Acquire);
        if seen != slot && bucket.slot.compare_exchange(seen, slot, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            bucket.a.store(0, Ordering::Relaxed);
            bucket.b.store(0, Ordering::Relaxed);
        }
        if a != 0 {
            bucket.a.fetch_add(a, Ordering::Relaxed);
        }
        if b != 0 {
            bucket.b.fetch_add(b, Ordering::Relaxed);
        }
    }

    /// The two sums over the window that ends at `now`.
    pub fn sums(&self, now: Instant) -> (u64, u64) {
        let slot = self.slot(now);
        let oldest = slot.saturating_sub(BUCKETS as u64 - 1);
        let mut sums = (0, 0);
        for bucket in &self.buckets {
            let s = bucket.slot.load(Ordering::Acquire);
            if s >= oldest && s <= slot && s != 0 {
                sums.0 += bucket.a.load(Ordering::Relaxed);
                sums.1 += bucket.b.load(Ordering::Relaxed);
            }
        }
        sums
    }

    /// Forgets everything.
    pub fn clear(&self) {
        for bucket in &self.buckets {
            bucket.slot.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_slide_out_of_the_window() {
        let t0 = Instant::now();
        let w = Window::new(Duration::from_secs(10), t0);
        w.add(t0, 5, 1);
        w.add(t0 + Duration::from_secs(4), 3, 0);
        assert_eq!(w.sums(t0 + Duration::from_secs(5)), (8, 1));
        // The first bucket has left the window; the second has not.
        assert_eq!(w.sums(t0 + Duration::from_secs(10)), (3, 0));
        assert_eq!(w.sums(t0 + Duration::from_secs(14)), (0, 0));
        // A reused bucket starts from zero.
        w.add(t0 + Duration::from_secs(20), 1, 1);
        assert_eq!(w.sums(t0 + Duration::from_secs(20)), (1, 1));
        w.clear();
        assert_eq!(w.sums(t0 + Duration::from_secs(20)), (0, 0));
    }
}

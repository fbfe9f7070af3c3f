//! The numbers behind every metric: counters, gauges and histograms whose
//! cells are sharded by thread.
//!
//! Hand-written atomics rather than `prometheus-client`: its label families
//! take a lock (a `RwLock`ed map) on every update, which is the per-request
//! cost issue 13 forbids. Here a label set is resolved when the config is
//! compiled (or, for a status code, once per series), and an update is one
//! relaxed `fetch_add` on a cache line that the current thread has to
//! itself most of the time: each thread writes its own shard, and only a
//! scrape reads them all.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Keeps one shard per cache line, so that two threads never write the same line.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// How many shards each metric has: the machine's threads, rounded up to a
/// power of two (at most 16).
fn shards() -> usize {
    static SHARDS: OnceLock<usize> = OnceLock::new();
    *SHARDS.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(4, |n| n.get());
        n.next_power_of_two().clamp(1, 16)
    })
}

/// One cell per shard.
pub fn cells<T: Default>() -> Box<[Padded<T>]> {
    (0..shards()).map(|_| Padded::default()).collect()
}

/// This thread's shard (threads are numbered on first use).
#[inline]
pub fn shard() -> usize {
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    SHARD.with(|s| {
        let mut i = s.get();
        if i == usize::MAX {
            i = NEXT.fetch_add(1, Ordering::Relaxed);
            s.set(i);
        }
        i & (shards() - 1)
    })
}

/// A monotonic count.
#[derive(Debug)]
pub struct Counter {
    shards: Box<[Padded<AtomicU64>]>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter { shards: cells() }
    }
}

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).fold(0, u64::wrapping_add)
    }
}

/// A value that goes up and down (in-flight requests, open connections).
/// An increment and its decrement may land on different shards; only the sum means anything.
#[derive(Debug)]
pub struct Gauge {
    shards: Box<[Padded<AtomicI64>]>,
}

impl Default for Gauge {
    fn default() -> Self {
        Gauge { shards: cells() }
    }
}

impl Gauge {
    #[inline]
    pub fn add(&self, n: i64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the value (for gauges one writer owns, such as a timestamp).
    pub fn set(&self, v: i64) {
        for (i, s) in self.shards.iter().enumerate() {
            s.0.store(if i == 0 { v } else { 0 }, Ordering::Relaxed);
        }
    }

    pub fn get(&self) -> i64 {
        self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).fold(0, i64::wrapping_add)
    }
}

/// Upper bounds of a histogram's buckets, in its unit (nanoseconds or
/// bytes), and how they are printed.
#[derive(Debug)]
pub struct Buckets {
    pub bounds: &'static [u64],
    /// Divides a value to print it in the metric's unit (1e9 for seconds).
    pub scale: f64,
}

/// Request and upstream durations, in nanoseconds, printed in seconds. The
/// OpenTelemetry defaults start at 5 ms; a gateway's own answers take well
/// under a millisecond, so three finer buckets come first.
pub const DURATION: Buckets = Buckets {
    bounds: &[
        500_000,
        1_000_000,
        2_500_000,
        5_000_000,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
        250_000_000,
        500_000_000,
        1_000_000_000,
        2_500_000_000,
        5_000_000_000,
        10_000_000_000,
    ],
    scale: 1e9,
};

/// Body sizes in bytes.
pub const SIZE: Buckets = Buckets {
    bounds: &[0, 64, 256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216],
    scale: 1.0,
};

const MAX_BUCKETS: usize = 16;

#[derive(Debug, Default)]
struct HistogramShard {
    /// Per bucket, not cumulative (the last is `+Inf`): a record touches one cell.
    counts: [AtomicU64; MAX_BUCKETS],
    sum: AtomicU64,
}

#[derive(Debug)]
pub struct Histogram {
    buckets: &'static Buckets,
    shards: Box<[Padded<HistogramShard>]>,
}

impl Histogram {
    pub fn new(buckets: &'static Buckets) -> Histogram {
        assert!(buckets.bounds.len() < MAX_BUCKETS);
        Histogram { buckets, shards: cells() }
    }

    #[inline]
    pub fn record(&self, value: u64) {
        self.record_in(shard(), value);
    }

    /// Records into shard `shard` (this thread's, from [`shard`], looked up
    /// once for several histograms).
    #[inline]
    pub fn record_in(&self, shard: usize, value: u64) {
        let bucket = self.buckets.bounds.iter().position(|&b| value <= b).unwrap_or(self.buckets.bounds.len());
        let shard = &self.shards[shard].0;
        shard.counts[bucket].fetch_add(1, Ordering::Relaxed);
        shard.sum.fetch_add(value, Ordering::Relaxed);
    }

    /// Cumulative counts per bound (the last is `+Inf`, the total), and the sum.
    pub fn snapshot(&self) -> Snapshot {
        let n = self.buckets.bounds.len() + 1;
        let mut counts = vec![0u64; n];
        let mut sum = 0u64;
        for s in self.shards.iter() {
            for (c, cell) in counts.iter_mut().zip(&s.0.counts) {
                *c += cell.load(Ordering::Relaxed);
            }
            sum = sum.wrapping_add(s.0.sum.load(Ordering::Relaxed));
        }
        let mut running = 0;
        for c in &mut counts {
            running += *c;
            *c = running;
        }
        Snapshot { buckets: self.buckets, cumulative: counts, sum }
    }
}

pub struct Snapshot {
    pub buckets: &'static Buckets,
    pub cumulative: Vec<u64>,
    pub sum: u64,
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_across_threads() {
        let c = std::sync::Arc::new(Counter::default());
        let g = std::sync::Arc::new(Gauge::default());
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (c, g) = (c.clone(), g.clone());
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                        g.add(1);
                    }
                    g.add(-500);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(), 6000);
        assert_eq!(g.get(), 3000);
        g.set(7);
        assert_eq!(g.get(), 7);
    }

    #[test]
    fn histogram_buckets_are_inclusive_and_cumulative() {
        let h = Histogram::new(&SIZE);
        for v in [0, 64, 65, 1024, 100_000_000] {
            h.record(v);
        }
        let s = h.snapshot();
        // le=0: {0}; le=64: {0,64}; le=256: +65; le=1024: +1024; +Inf: all five.
        assert_eq!(&s.cumulative[..4], &[1, 2, 3, 4]);
        assert_eq!(s.cumulative[SIZE.bounds.len() - 1], 4);
        assert_eq!(s.count(), 5);
        assert_eq!(s.sum, 64 + 65 + 1024 + 100_000_000);
    }
}

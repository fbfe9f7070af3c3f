//! Rate-limit store micro-benchmark: memory for 1,000,000 distinct keys and
//! the cost of one check. Not a test: run with
//! `cargo bench --bench ratelimit` and copy the output to BENCHMARKS.md.
// A benchmark measures real elapsed time: the wall clock and `Instant` are its to read.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::time::Instant;

use portcullis::bench::Gcra;
use portcullis::bench::MemoryStore;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    const KEYS: u32 = 1_000_000;
    // 100/min with a burst of 20: entries stay active (not idle, so not
    // evictable) for the whole run, the worst case for memory.
    let gcra = Gcra::new(100, 60_000_000_000, 20, None);
    let store = MemoryStore::new(KEYS as usize);
    let before = rss_kib();
    let started = Instant::now();
    for i in 0..KEYS {
        // Client IPs as the key, as a per-IP limit would see them.
        let ip = i.to_be_bytes();
        black_box(store.check(store.key(&ip), 0, &gcra));
    }
    let insert = started.elapsed();
    let after = rss_kib();
    println!("keys stored:                  {}", store.len());
    println!(
        "RSS for {KEYS} keys:      {} MiB ({} bytes per key)",
        (after - before) / 1024,
        (after - before) * 1024 / u64::from(KEYS)
    );
    println!("first check of a new key:     {:.0} ns", insert.as_nanos() as f64 / f64::from(KEYS));

    let hot = store.key(b"203.0.113.9");
    let n = 5_000_000u32;
    let started = Instant::now();
    for _ in 0..n {
        black_box(store.check(hot, 0, &gcra));
    }
    println!("check of one hot key:         {:.0} ns", started.elapsed().as_nanos() as f64 / f64::from(n));
    let started = Instant::now();
    for i in 0..n {
        let ip = (i % KEYS).to_be_bytes();
        black_box(store.check(store.key(&ip), 0, &gcra));
    }
    println!(
        "check over 1M existing keys:  {:.0} ns (incl. hashing the key)",
        started.elapsed().as_nanos() as f64 / f64::from(n)
    );

    // The cap holds under a flood of distinct keys.
    let small = MemoryStore::new(100_000);
    for i in 0..KEYS {
        small.check(small.key(&i.to_le_bytes()), 0, &gcra);
    }
    println!("cap 100,000 after 1M keys:    {} stored", small.len());
}

//! What one ECS access-log line costs to format, without the proxy around
//! it: the line of a plain proxied GET (bench/run.sh's request: no query
//! or user agent, one upstream try), appended to a buffer as a request's
//! thread does. Not a test: run with `cargo bench --bench access_log`;
//! `ITERATIONS=N` sets the count (under callgrind, instructions per line).
// A benchmark measures real elapsed time: `Instant` is its to read.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::time::Instant;

use portcullis::bench::EcsLine;

fn main() {
    let iterations: u32 = std::env::var("ITERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(2_000_000);
    let mut line = EcsLine::new();
    line.write();
    let len = line.out.len();
    let start = Instant::now();
    for _ in 0..iterations {
        line.write();
        black_box(&line.out);
    }
    let ns = start.elapsed().as_nanos() as f64 / f64::from(iterations);
    println!("ECS line of a proxied GET ({len} bytes): {ns:.1} ns");
}

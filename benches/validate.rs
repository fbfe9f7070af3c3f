//! What validating a JSON body costs, without the proxy around it: the
//! read into the tape (JSON threat limits, syntax, duplicate keys), the
//! schema check on it, and the check as a route makes it (the one-pass
//! shortcut, then the full path if it is not sure), for bench/orders.py's
//! bodies of 1, 10 and 100 KiB against bench/orders-schema.json. Not a
//! test: run with `cargo bench --bench validate` (needs python3 for the
//! bodies). `ITERATIONS=N` sets the count per size (under callgrind, a
//! small N gives instructions per body) and `KIB=1,10` the sizes.
// A benchmark measures real elapsed time: `Instant` is its to read.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use portcullis::bench::BodyCheck;

fn per_op(n: u32, mut f: impl FnMut() -> bool) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        assert!(black_box(f()));
    }
    start.elapsed().as_nanos() as f64 / f64::from(n) / 1000.0
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("portcullis-validate-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = std::process::Command::new("python3")
        .arg(root.join("bench/orders.py"))
        .arg(&dir)
        .args(["1", "10", "100"])
        .status()
        .expect("python3 runs bench/orders.py");
    assert!(made.success());
    let schema: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("bench/orders-schema.json")).unwrap()).unwrap();
    let check = BodyCheck::new(&schema).unwrap();
    let iterations: u32 = std::env::var("ITERATIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let sizes: Vec<u32> = match std::env::var("KIB") {
        Ok(list) => list.split(',').filter_map(|k| k.trim().parse().ok()).collect(),
        Err(_) => vec![1, 10, 100],
    };
    for kib in sizes {
        let body = std::fs::read(dir.join(format!("body-{kib}.json"))).unwrap();
        let n = (iterations / kib).max(1);
        per_op(n / 10 + 1, || check.check(&body));
        let read = per_op(n, || check.read(&body));
        let full = per_op(n, || check.full(&body));
        let route = per_op(n, || check.check(&body));
        println!(
            "{kib:>3} KiB ({} B): read {read:8.2} µs, read + schema {full:8.2} µs, as a route checks it (the shortcut first) {route:8.2} µs ({:.0} ns per KiB)",
            body.len(),
            route * 1000.0 / f64::from(kib)
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

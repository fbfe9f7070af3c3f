//! Fuzzing on stable Rust (no nightly toolchain here, so no cargo-fuzz):
//! properties run by proptest, as ordinary `#[test]`s named `fuzz_*` next
//! to the parser they target. Every `cargo test` runs a fixed,
//! deterministic batch of each (`CASES`); a longer run picks random seeds
//! until its time is up and prints how many cases it tried:
//!
//! ```sh
//! PORTCULLIS_FUZZ_SECONDS=600 cargo test --release --lib fuzz_ -- --test-threads=1 --nocapture
//! ```
//!
//! A failure prints the smallest input proptest could shrink it to; add it
//! to the target's unit tests (or the smuggling suite) when fixing it.

use std::fmt::Debug;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRng, TestRunner};

/// Cases per target in an ordinary test run.
const CASES: u32 = 512;
/// Cases per batch in a timed run (a fresh seed each batch).
const BATCH: u32 = 20_000;

/// Runs `test` on values of `strategy`: `CASES` deterministic ones, or
/// batches of random ones for `PORTCULLIS_FUZZ_SECONDS`.
pub fn run<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let config = |cases| Config { cases, failure_persistence: None, max_shrink_iters: 4096, ..Config::default() };
    let seconds = std::env::var("PORTCULLIS_FUZZ_SECONDS").ok().and_then(|s| s.parse::<u64>().ok());
    let Some(seconds) = seconds else {
        let rng = TestRng::deterministic_rng(Config::default().rng_algorithm);
        let mut runner = TestRunner::new_with_rng(config(CASES), rng);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name}: {e}");
        }
        return;
    };
    // Wall time is what the operator asked for; this is test code only.
    #[allow(clippy::disallowed_types)]
    let started = std::time::Instant::now();
    let mut total: u64 = 0;
    while started.elapsed().as_secs() < seconds {
        let mut runner = TestRunner::new(config(BATCH));
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} after {total} cases: {e}");
        }
        total += u64::from(BATCH);
    }
    println!("fuzz target {name}: {total} cases in {} s, no failure", started.elapsed().as_secs());
}

/// Bytes that matter to HTTP/1.1 parsers, for mutating well-formed input.
pub fn wire_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => prop::sample::select(&b"\r\n\t :;,=\"\\/?#%@.-_0123456789aAzZ\0\x01\x0b\x7f\xff"[..]),
        1 => any::<u8>(),
    ]
}

/// `base` with up to `edits` random bytes replaced, inserted or removed.
pub fn mutated(base: Vec<u8>, edits: usize) -> impl Strategy<Value = Vec<u8>> {
    let len = base.len().max(1);
    prop::collection::vec((0..3u8, 0..len, wire_byte()), 0..=edits).prop_map(move |ops| {
        let mut out = base.clone();
        for (op, at, byte) in ops {
            let at = at.min(out.len());
            match op {
                0 if at < out.len() => out[at] = byte,
                1 => out.insert(at, byte),
                _ if at < out.len() => {
                    out.remove(at);
                }
                _ => {}
            }
        }
        out
    })
}

//! A route's limits as the limit phases run them, with a hand-set wall
//! clock for quota windows (rates are counted on tokio's clock, which the
//! tests pause). The store itself (GCRA, sharding, eviction) is tested in
//! `gcra.rs` and `memory.rs`; Redis end to end in `tests/it/ratelimit.rs`.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode};

use super::{ConcurrencyConfig, PhasedLimits, QuotaConfig, RateLimitConfig, RouteLimits, Stores, compile};
use crate::policy::clock::WallClock;
use crate::policy::compile::{Shared, with_test_ctx};
use crate::policy::ctx::{Outcome, RequestCtx};

/// 2026-12-03T00:00:30Z: half a minute into a minute window.
const NOW: u64 = 1_796_256_030;

/// A route's limits compiled against the memory store and `clock`.
fn compiled(
    rates: &str,
    quotas: &str,
    concurrency: &str,
    clock: &WallClock,
) -> Result<PhasedLimits, crate::config::FieldErrors> {
    let rates: Vec<RateLimitConfig> = serde_saphyr::from_str(rates).unwrap();
    let quotas: Vec<QuotaConfig> = serde_saphyr::from_str(quotas).unwrap();
    let concurrency: Vec<ConcurrencyConfig> = serde_saphyr::from_str(concurrency).unwrap();
    let mut shared = Shared::default();
    shared.insert(Arc::new(Arc::new(
        with_test_ctx(Shared::default(), |cx| Stores::compile(&Default::default(), cx)).unwrap(),
    )));
    shared.insert(Arc::new(clock.clone()));
    let cfg = RouteLimits { rate_limit: &rates, quota: &quotas, concurrency: &concurrency };
    with_test_ctx(shared, |cx| compile(&cfg, cx))
}

fn limits(rates: &str, quotas: &str, concurrency: &str, clock: &WallClock) -> PhasedLimits {
    compiled(rates, quotas, concurrency, clock).unwrap()
}

/// Runs `policy` for a request from `ip`: the status, and the `RateLimit`
/// info it leaves (remaining, reset).
async fn run(policy: &super::Compiled, ip: &str) -> (StatusCode, Option<(u64, u64)>) {
    let request_id = HeaderValue::from_static("r-1");
    let mut ctx = RequestCtx::new(ip.parse().unwrap(), &request_id, "route", None);
    let mut req = Request::new(()).into_parts().0;
    let status = match policy.on_request(&mut req, &mut ctx).await {
        Outcome::Continue => StatusCode::OK,
        Outcome::Respond(resp) => resp.status(),
    };
    (status, ctx.rate_limit.map(|i| (i.remaining, i.reset_secs)))
}

#[tokio::test(start_paused = true)]
async fn a_quota_resets_when_the_calendar_window_turns() {
    let clock = WallClock::fixed(NOW);
    let (by_ip, later) = limits("[]", "[ { key: ip, limit: 2, per: minute } ]", "[]", &clock);
    assert!(later.is_none(), "an IP-keyed quota runs before authentication");
    let quota = by_ip.unwrap();
    assert_eq!(run(&quota, "192.0.2.1").await, (StatusCode::OK, Some((1, 30))));
    assert_eq!(run(&quota, "192.0.2.1").await.0, StatusCode::OK);
    assert_eq!(run(&quota, "192.0.2.1").await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(run(&quota, "192.0.2.2").await.0, StatusCode::OK, "another client has its own budget");
    clock.advance(29);
    assert_eq!(run(&quota, "192.0.2.1").await.0, StatusCode::TOO_MANY_REQUESTS, "same minute");
    clock.advance(1);
    assert_eq!(run(&quota, "192.0.2.1").await, (StatusCode::OK, Some((1, 60))), "the next minute");
}

/// `ipv6_prefix` on a quota: the addresses of one /64 share its count (a
/// client with a /64 rotated addresses past a per-address quota).
#[tokio::test(start_paused = true)]
async fn a_quota_counts_an_ipv6_network_with_ipv6_prefix() {
    let clock = WallClock::fixed(NOW);
    let (by_ip, _) = limits("[]", "[ { key: ip, limit: 2, per: minute, ipv6_prefix: 64 } ]", "[]", &clock);
    let quota = by_ip.unwrap();
    assert_eq!(run(&quota, "2001:db8:1:2::1").await.0, StatusCode::OK);
    assert_eq!(run(&quota, "2001:db8:1:2::2").await.0, StatusCode::OK);
    assert_eq!(run(&quota, "2001:db8:1:2::3").await.0, StatusCode::TOO_MANY_REQUESTS, "one /64, one count");
    assert_eq!(run(&quota, "2001:db8:1:3::1").await.0, StatusCode::OK, "another /64");
    let refused = compiled("[]", "[ { key: ip, limit: 2, per: minute, ipv6_prefix: 129 } ]", "[]", &clock);
    assert!(refused.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_rate_refills_with_time_and_allows_its_burst() {
    let clock = WallClock::fixed(NOW);
    let (by_ip, _) = limits("[ { key: ip, rate: 2/s, burst: 1 } ]", "[]", "[]", &clock);
    let rate = by_ip.unwrap();
    // An idle client gets 1 + burst at once.
    for _ in 0..2 {
        assert_eq!(run(&rate, "198.51.100.1").await.0, StatusCode::OK);
    }
    assert_eq!(run(&rate, "198.51.100.1").await.0, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::advance(Duration::from_millis(500)).await;
    assert_eq!(run(&rate, "198.51.100.1").await.0, StatusCode::OK, "one request back after 1/rate");
    assert_eq!(run(&rate, "198.51.100.1").await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn concurrency_slots_are_held_until_dropped() {
    let clock = WallClock::fixed(NOW);
    let (by_ip, _) = limits("[]", "[]", "[ { key: ip, max: 1 } ]", &clock);
    let limit = by_ip.unwrap();
    let request_id = HeaderValue::from_static("r-1");
    let mut first = RequestCtx::new("203.0.113.1".parse().unwrap(), &request_id, "route", None);
    let mut req = Request::new(()).into_parts().0;
    assert!(matches!(limit.on_request(&mut req, &mut first).await, Outcome::Continue));
    // Refused with 503: the service is busy, not the caller too fast.
    assert_eq!(run(&limit, "203.0.113.1").await.0, StatusCode::SERVICE_UNAVAILABLE, "the first still holds it");
    drop(first.slots);
    assert_eq!(run(&limit, "203.0.113.1").await.0, StatusCode::OK);
}

#[test]
fn bad_limits_are_named_by_their_place() {
    let clock = WallClock::fixed(NOW);
    let errors = |rates: &str, quotas: &str| {
        let Err(errs) = compiled(rates, quotas, "[]", &clock) else { panic!("compiled: {rates} {quotas}") };
        errs.into_iter().map(|e| e.0).collect::<Vec<_>>()
    };
    assert_eq!(errors("[]", "[ { key: ip, limit: 0, per: day } ]"), ["quota[0].limit"]);
    assert_eq!(errors("[]", "[ { key: ip, limit: 1000000000000000, per: month } ]"), ["quota[0].limit"]);
    assert_eq!(
        errors("[ { key: ip, rate: 1/s, name: \"caf\u{e9}\" }, { key: ip, rate: 1/s, name: \"\" } ]", "[]"),
        ["rate_limit[0].name", "rate_limit[1].name"]
    );
}

#[test]
fn policy_names_are_escaped_not_cut() {
    // Two names that differ by a quote stay two names (metrics and headers).
    let quoted = super::policy_value(r#"lim "1""#, 10, 1);
    assert_eq!(quoted, r#""lim \"1\"";q=10;w=1"#);
    assert_ne!(quoted, super::policy_value("lim 1", 10, 1));
    assert_eq!(super::policy_value("caf\u{e9}#rate0", 10, 1), r#""caf_#rate0";q=10;w=1"#);
}

#[test]
fn counter_keys_keep_their_layout() {
    // Length-prefixed scope, then each part's kind and value: the bytes
    // Redis keys and the memory store's hashes are made of, so a change
    // here resets shared counters.
    let spec: super::KeySpec = serde_saphyr::from_str("[ ip, header: x-tenant ]").unwrap();
    let key = super::Key::compile(&spec, "r#rate0".into(), None, 128).unwrap();
    let request_id = HeaderValue::from_static("r-1");
    let ctx = RequestCtx::new("192.0.2.1".parse().unwrap(), &request_id, "route", None);
    let mut req = Request::new(()).into_parts().0;
    let mut want = Vec::new();
    for part in [&b"r#rate0"[..], b"ip", &[192, 0, 2, 1], b"header:x-tenant", b"\0ip:\xc0\x00\x02\x01"] {
        want.extend_from_slice(&(part.len() as u32).to_le_bytes());
        want.extend_from_slice(part);
    }
    assert_eq!(&*key.of(&req, &ctx), want, "a missing header counts by IP, tagged");
    req.headers.insert("x-tenant", HeaderValue::from_static("acme"));
    let of = key.of(&req, &ctx);
    assert_eq!(&of[of.len() - 8..], b"\x04\x00\x00\x00acme");
}

#[tokio::test]
async fn only_limits_that_never_wait_answer_without_awaiting() {
    let clock = WallClock::fixed(NOW);
    let request_id = HeaderValue::from_static("r-1");
    let mut req = Request::new(()).into_parts().0;
    let (plain, _) = limits("[ { key: ip, rate: 5/s } ]", "[]", "[]", &clock);
    let mut ctx = RequestCtx::new("192.0.2.1".parse().unwrap(), &request_id, "route", None);
    assert!(matches!(plain.unwrap().try_sync(&mut req, &mut ctx), Some(Outcome::Continue)));
    assert!(ctx.rate_limit.is_some(), "the headers' state is noted");
    // Delay mode may have to sleep: it is left to the awaiting path, uncounted.
    let (delayed, _) = limits("[ { key: ip, rate: 5/s, burst: 2, mode: delay, delay: 1 } ]", "[]", "[]", &clock);
    let mut ctx = RequestCtx::new("192.0.2.1".parse().unwrap(), &request_id, "route", None);
    assert!(delayed.unwrap().try_sync(&mut req, &mut ctx).is_none());
    assert!(ctx.rate_limit.is_none(), "nothing counted");
}

#[test]
fn key_bytes_spill_past_the_stack_buffer_unchanged() {
    let mut key = super::KeyBytes::new();
    let mut want = Vec::new();
    for i in 0..40u8 {
        let part = [i; 3];
        key.push(&part);
        want.extend_from_slice(&part);
        assert_eq!(&*key, &want[..], "after {} bytes", want.len());
    }
}

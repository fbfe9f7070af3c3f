//! Rate limits, quotas and concurrency limits as clients see them, alone
//! and shared by two gateway processes through a real Redis.

use std::time::{Duration, Instant};

use crate::support::process::spawn_gateway;
use crate::support::redis::Redis;
use crate::support::{Upstream, gateway, get};

async fn limited(up: &Upstream, route_extra: &str, top: &str) -> crate::support::Gateway1 {
    gateway(&format!(
        "{top}\nupstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nroutes:\n  - name: api\n    match: {{ path_prefix: / }}\n    upstream: svc\n{route_extra}",
        up.url()
    ))
    .await
}

#[tokio::test]
async fn per_ip_limit_with_burst_and_headers() {
    let up = Upstream::start("svc").await;
    let gw = limited(&up, "    rate_limit: [ { key: ip, rate: 1/min, burst: 2 } ]\n", "").await;
    for remaining in [2, 1, 0] {
        let r = get(&gw.url("/"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("ratelimit-policy"), Some("\"api#rate0\";q=3;w=60"));
        let state = r.header("ratelimit").unwrap().to_string();
        assert!(state.starts_with(&format!("\"api#rate0\";r={remaining};t=")), "{state}");
    }
    // Spoofed X-Forwarded-For from an untrusted client changes nothing.
    let r = get(&gw.url("/"), &[("x-forwarded-for", "198.51.100.77")]).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.header("ratelimit").unwrap().contains(";r=0;"));
    assert_eq!(up.hits(), 3, "refused requests never reach the upstream");
}

/// A header-keyed limit counts by the header's value; a request without
/// one, or with an empty one, by its client address (an empty value must
/// not be one bucket that any client can drain for every other).
#[tokio::test]
async fn a_header_key_without_a_value_counts_by_client() {
    let up = Upstream::start("svc").await;
    let gw = limited(
        &up,
        "    rate_limit: [ { key: { header: X-Tenant }, rate: 1/min } ]\n",
        "trusted_proxies: [ 127.0.0.1 ]",
    )
    .await;
    let from = |ip: &'static str, tenant: &'static str| {
        let url = gw.url("/");
        async move { get(&url, &[("x-forwarded-for", ip), ("x-tenant", tenant)]).await.status }
    };
    assert_eq!(from("10.0.0.1", "").await, 200);
    assert_eq!(from("10.0.0.2", " ").await, 200, "another client, its own bucket");
    assert_eq!(from("10.0.0.1", "").await, 429, "the first client's bucket is spent");
    assert_eq!(from("10.0.0.3", "acme").await, 200);
    assert_eq!(from("10.0.0.4", "acme").await, 429, "one tenant, one bucket, whoever sends it");
    // Of two lines, the last counts (a proxy in front appends its own):
    // a client's line written before it does not make a fresh bucket.
    let two = |first: &'static str| {
        let url = gw.url("/");
        async move { get(&url, &[("x-forwarded-for", "10.0.0.5"), ("x-tenant", first), ("x-tenant", "acme")]).await.status }
    };
    assert_eq!(two("fresh-1").await, 429, "counted as acme");
    assert_eq!(two("fresh-2").await, 429);
}

/// A key on the headers the client address is read from counts by that
/// address (`ip`): as sent, any client wrote itself a new budget a request,
/// and a proxy in front appends to the client's own line.
#[tokio::test]
async fn a_key_on_x_forwarded_for_counts_the_client_address() {
    let up = Upstream::start("svc").await;
    for header in ["X-Forwarded-For", "Forwarded"] {
        let key = format!("    rate_limit: [ {{ key: {{ header: {header} }}, rate: 1/min }} ]\n");
        let untrusted = limited(&up, &key, "").await;
        let from = |value: String| {
            let url = untrusted.url("/");
            async move { get(&url, &[(header, value.as_str())]).await.status }
        };
        assert_eq!(from("for=198.51.100.1".into()).await, 200, "{header}");
        assert_eq!(from("198.51.100.2".into()).await, 429, "{header}: a forged value is no new budget");
    }
    // Behind a trusted proxy that appends the address it saw to the client's line.
    let key = "    rate_limit: [ { key: { header: X-Forwarded-For }, rate: 1/min } ]\n";
    let behind = limited(&up, key, "trusted_proxies: [ 127.0.0.1 ]").await;
    let from = |line: &'static str| {
        let url = behind.url("/");
        async move { get(&url, &[("x-forwarded-for", line)]).await.status }
    };
    assert_eq!(from("6.6.6.1, 203.0.113.7").await, 200);
    assert_eq!(from("6.6.6.2, 203.0.113.7").await, 429, "one client, whatever it wrote before");
    assert_eq!(from("203.0.113.8").await, 200, "another client");
    // One named budget for an `ip` key and an `X-Forwarded-For` one: one counter.
    let shared = "    rate_limit: [ { name: per-client, key: ip, rate: 1/min } ]\n  \
                  - name: other\n    match: { path_prefix: /other }\n    upstream: svc\n    \
                  rate_limit: [ { name: per-client, key: { header: X-Forwarded-For }, rate: 1/min } ]\n";
    let named = limited(&up, shared, "").await;
    assert_eq!(get(&named.url("/other"), &[]).await.status, 200);
    assert_eq!(get(&named.url("/"), &[]).await.status, 429, "the budget the other route spent");
}

#[tokio::test]
async fn per_consumer_limits_with_api_keys_and_legacy_headers() {
    let up = Upstream::start("svc").await;
    let (a, b) = (portcullis::hash_key("key-a"), portcullis::hash_key("key-b"));
    let top = format!(
        "rate_limit_headers: legacy\nauth:\n  keys: {{ api_key: {{ header: X-API-Key }} }}\nconsumers:\n  - {{ id: a, api_keys: [ {{ sha256: \"{a}\" }} ] }}\n  - {{ id: b, api_keys: [ {{ sha256: \"{b}\" }} ] }}"
    );
    let gw = limited(&up, "    authenticate: [keys]\n    rate_limit: [ { key: consumer, rate: 2/min } ]\n", &top).await;
    let call = |k: &'static str| {
        let url = gw.url("/");
        async move { get(&url, &[("x-api-key", k)]).await }
    };
    let first = call("key-a").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("0"));
    assert!(first.header("ratelimit").is_none(), "legacy mode only");
    assert_eq!(call("key-a").await.status, 429);
    // Consumer b has its own budget.
    assert_eq!(call("key-b").await.status, 200);
}

#[tokio::test]
async fn delay_mode_queues_instead_of_refusing() {
    let up = Upstream::start("svc").await;
    let gw = limited(&up, "    rate_limit: [ { key: ip, rate: 10/s, burst: 3, mode: delay } ]\n", "").await;
    let started = Instant::now();
    let mut calls = Vec::new();
    for _ in 0..5 {
        let url = gw.url("/");
        calls.push(tokio::spawn(async move { get(&url, &[]).await.status.as_u16() }));
    }
    let mut statuses = Vec::new();
    for c in calls {
        statuses.push(c.await.unwrap());
    }
    statuses.sort_unstable();
    // One at the rate plus a queue of 3; the 5th arrival finds the queue full.
    assert_eq!(statuses, vec![200, 200, 200, 200, 429]);
    // The last admitted waited for its slot: 3 × 100 ms after the first.
    assert!(started.elapsed() >= Duration::from_millis(290), "{:?}", started.elapsed());
}

#[tokio::test]
async fn daily_quota() {
    let up = Upstream::start("svc").await;
    let gw = limited(&up, "    quota: [ { key: ip, limit: 2, per: day } ]\n", "").await;
    assert_eq!(get(&gw.url("/"), &[]).await.status, 200);
    assert_eq!(get(&gw.url("/"), &[]).await.status, 200);
    let r = get(&gw.url("/"), &[]).await;
    assert_eq!(r.status, 429);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let to_midnight = 86_400 - now % 86_400;
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry.abs_diff(to_midnight) <= 2, "retry {retry}, midnight in {to_midnight}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_slots_are_released_on_completion_error_and_disconnect() {
    let up = Upstream::start("svc").await;
    let gw = limited(&up, "    concurrency: [ { key: ip, max: 1 } ]\n", "").await;
    let url = gw.url("/hold");
    let held = tokio::spawn(async move { get(&url, &[]).await.status });
    while up.hits() < 1 {
        tokio::task::yield_now().await;
    }
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!(r.status, 503, "the slot is taken");
    up.release();
    assert_eq!(held.await.unwrap(), 200);
    // Released on completion:
    assert_eq!(get(&gw.url("/x"), &[]).await.status, 200);
    // Released when the client goes away mid-request.
    let mut abandoned = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut abandoned, b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    while up.hits() < 3 {
        tokio::task::yield_now().await;
    }
    drop(abandoned);
    let mut freed = false;
    for _ in 0..200 {
        if get(&gw.url("/x"), &[]).await.status == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(freed, "the slot of a disconnected client must be released");
    up.release();
}

#[tokio::test]
async fn concurrency_slot_released_on_upstream_error() {
    let dead = crate::support::closed_port().await;
    let gw = gateway(&format!(
        "upstreams:\n  dead: {{ targets: [ \"http://{dead}\" ] }}\nroutes:\n  - {{ name: d, match: {{ path_prefix: / }}, upstream: dead, concurrency: [ {{ key: ip, max: 1 }} ] }}\n"
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/"), &[]).await.status, 502);
    }
}

fn shared_config(redis: &Redis, up: &Upstream, on_error: &str) -> String {
    format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nrate_limit_store:\n  redis: {{ url: \"{}\", timeout: 200ms }}\nupstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nroutes:\n  - name: api\n    match: {{ path_prefix: / }}\n    upstream: svc\n    rate_limit: [ {{ key: ip, rate: 1/min, burst: 9, on_store_error: {on_error} }} ]\n",
        redis.url(),
        up.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_budget_through_redis() {
    let mut redis = Redis::start();
    let up = Upstream::start("svc").await;
    let (_g1, a1) = spawn_gateway(&shared_config(&redis, &up, "closed"));
    let (_g2, a2) = spawn_gateway(&shared_config(&redis, &up, "closed"));
    let mut admitted = 0;
    for i in 0..20 {
        let addr = if i % 2 == 0 { a1 } else { a2 };
        if get(&format!("http://{addr}/"), &[]).await.status == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10, "burst 9 + 1 across both instances, not per instance");

    // Redis dies: fail-closed answers 503 quickly, never hangs.
    redis.kill();
    let started = Instant::now();
    let r = get(&format!("http://{a1}/"), &[]).await;
    assert_eq!(r.status, 503);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

/// A fast rate's step in Redis is whole microseconds, to the nearest, and
/// its burst that many steps: `95000/s` with `burst: 1000` let 1,053 in at
/// once (the step cut to 10 µs, the burst's tolerance cut on its own),
/// where the memory store, and the headers, said 1,001.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fast_rate_in_redis_keeps_its_burst() {
    let redis = Redis::start();
    let up = Upstream::start("svc").await;
    let config = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nrate_limit_store:\n  redis: {{ url: \"{}\" }}\nupstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nroutes:\n  - name: api\n    match: {{ path_prefix: / }}\n    upstream: svc\n    rate_limit: [ {{ key: ip, rate: 95000/s, burst: 1000 }} ]\n",
        redis.url(),
        up.url()
    );
    let (_g, addr) = spawn_gateway(&config);
    let r = get(&format!("http://{addr}/"), &[]).await;
    assert_eq!(r.status, 200);
    let state = r.header("ratelimit").unwrap();
    assert!(state.contains(";r=1000;"), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_open_to_local_counters() {
    let mut redis = Redis::start();
    let up = Upstream::start("svc").await;
    let (_g, addr) = spawn_gateway(&shared_config(&redis, &up, "open"));
    assert_eq!(get(&format!("http://{addr}/"), &[]).await.status, 200);
    redis.kill();
    // Local counters take over: the limit still holds (burst 9 + 1 locally).
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(get(&format!("http://{addr}/"), &[]).await.status.as_u16());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 429), "{statuses:?}");
}

#[tokio::test]
async fn upstream_keys_are_shared_and_reloads_keep_counters() {
    let up = Upstream::start("svc").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nroutes:\n  - {{ name: a, match: {{ path_prefix: /a }}, upstream: svc, rate_limit: [ {{ key: upstream, rate: 1/min }} ] }}\n  - {{ name: b, match: {{ path_prefix: /b }}, upstream: svc, rate_limit: [ {{ key: upstream, rate: 1/min }} ] }}\n",
        up.url()
    );
    let loaded = crate::support::load(&yaml, std::path::Path::new("."));
    let gw = portcullis::Gateway::start(&loaded).await.unwrap();
    let url = |p: &str| format!("http://{}{p}", gw.addr("gw").unwrap());
    assert_eq!(get(&url("/a"), &[]).await.status, 200);
    assert_eq!(get(&url("/b"), &[]).await.status, 429, "one budget for the upstream, whatever the route");
    // A reload does not hand out a fresh budget.
    gw.reload(&loaded).await.unwrap();
    assert_eq!(get(&url("/a"), &[]).await.status, 429);
}

/// Limits that share a counter namespace (an upstream's, or a `name`) but
/// key on different parts keep apart: a header's value never lands in the
/// counter of a consumer, an address or another header with the same bytes
/// (an anonymous client could spend a consumer's budget by sending its id).
#[tokio::test]
async fn a_value_of_one_key_part_never_counts_for_another() {
    let up = Upstream::start("svc").await;
    let a = portcullis::hash_key("key-a");
    let body = format!(
        "trusted_proxies: [ 127.0.0.0/8 ]\nauth:\n  keys: {{ api_key: {{ header: X-API-Key }} }}\n\
         consumers:\n  - {{ id: shop, api_keys: [ {{ sha256: \"{a}\" }} ] }}\n\
         upstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nroutes:\n\
         \x20 - {{ name: api, match: {{ path_prefix: /api }}, upstream: svc, authenticate: [keys], rate_limit: [ {{ key: [upstream, consumer], rate: 1/h }} ] }}\n\
         \x20 - {{ name: ip, match: {{ path_prefix: /ip }}, upstream: svc, rate_limit: [ {{ key: [upstream, ip], rate: 1/h }} ] }}\n\
         \x20 - {{ name: tenant, match: {{ path_prefix: /tenant }}, upstream: svc, rate_limit: [ {{ key: [upstream, {{ header: X-Tenant }}], rate: 1/h }} ] }}\n\
         \x20 - {{ name: user, match: {{ path_prefix: /user }}, upstream: svc, rate_limit: [ {{ key: [upstream, {{ header: X-User }}], rate: 1/h }} ] }}\n",
        up.url()
    );
    let gw = gateway(&body).await;
    let call = async |path: &str, headers: &[(&str, &str)]| get(&gw.url(path), headers).await.status.as_u16();
    // "shop" as a tenant, "ABCD" (65.66.67.68's bytes) as a tenant, "x" as a tenant.
    assert_eq!(call("/tenant", &[("x-tenant", "shop")]).await, 200);
    assert_eq!(call("/tenant", &[("x-tenant", "ABCD")]).await, 200);
    assert_eq!(call("/tenant", &[("x-tenant", "x")]).await, 200);
    assert_eq!(call("/tenant", &[("x-tenant", "x")]).await, 429, "the tenant's own budget is spent");
    assert_eq!(call("/api", &[("x-api-key", "key-a")]).await, 200, "the consumer's budget is its own");
    assert_eq!(call("/ip", &[("x-forwarded-for", "65.66.67.68")]).await, 200, "the address's budget is its own");
    assert_eq!(call("/user", &[("x-user", "x")]).await, 200, "another header's budget is its own");
    assert_eq!(call("/user", &[("x-user", "x")]).await, 429);
}

/// A token without a string `sub` names no consumer: `key: consumer`
/// counts such callers by their address, not in one bucket they would all
/// share (one of them could exhaust it for the others).
#[tokio::test]
async fn callers_without_a_subject_are_counted_by_address() {
    use crate::support::idp::{now, sign_hs};
    let up = Upstream::start("svc").await;
    let secret = "a-secret-of-at-least-thirty-two-bytes!";
    let top = format!(
        "trusted_proxies: [ 127.0.0.0/8 ]\nauth:\n  hs: {{ jwt: {{ algorithms: [HS256], secret: \"{secret}\" }} }}\nwarnings: {{ allow: [ literal-secret ] }}"
    );
    let gw = limited(&up, "    authenticate: [hs]\n    rate_limit: [ { key: consumer, rate: 1/h } ]\n", &top).await;
    let token = sign_hs(jsonwebtoken::Algorithm::HS256, secret, &serde_json::json!({ "exp": now() + 300 }));
    let bearer = format!("Bearer {token}");
    let from = |ip: &'static str| [("authorization", bearer.clone()), ("x-forwarded-for", ip.to_string())];
    let call = async |ip: &'static str| {
        let headers = from(ip);
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        get(&gw.url("/"), &headers).await.status.as_u16()
    };
    assert_eq!(call("10.0.0.1").await, 200);
    assert_eq!(call("10.0.0.2").await, 200, "another caller without a subject has its own budget");
    assert_eq!(call("10.0.0.1").await, 429, "the same caller's budget is spent");
}

/// Redis (or a NAT, or its own `timeout`) closing the gateway's idle
/// connection is not an outage: the next check goes out on a new
/// connection, and a fail-closed limit does not answer 503 for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_redis_closed_is_replaced_not_counted_as_an_outage() {
    let redis = Redis::start();
    let up = Upstream::start("svc").await;
    let (_g, addr) = spawn_gateway(&shared_config(&redis, &up, "closed"));
    assert_eq!(get(&format!("http://{addr}/"), &[]).await.status, 200);
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = ::redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1, "the gateway's connection");
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(get(&format!("http://{addr}/"), &[]).await.status.as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 200, 200]);
}

/// A counter in Redis that is no number (another program's key, a
/// corruption) is one client's problem, not an outage of the store: a
/// fail-closed limit keeps answering (it answered 503 to every client for
/// a second after each such request); a value later than the limit could
/// set holds its client back one interval at most (it locked it out with
/// no end: no expiry, `Retry-After: 1` forever) and gets an expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_redis_counters_are_read_as_no_counter_or_cut() {
    let redis = Redis::start();
    let up = Upstream::start("svc").await;
    let yaml = shared_config(&redis, &up, "closed")
        .replace("rate_limit_store:", "trusted_proxies: [ 127.0.0.1 ]\nrate_limit_store:");
    let (_g, addr) = spawn_gateway(&yaml);
    let from = |ip: &'static str| async move { get(&format!("http://{addr}/"), &[("x-forwarded-for", ip)]).await };
    assert_eq!(from("10.0.0.1").await.status, 200);
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*gcra*").query_async(&mut admin).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    let set = async |admin: &mut ::redis::aio::MultiplexedConnection, value: &str| {
        let _: () = ::redis::cmd("DEL").arg(key).query_async(admin).await.unwrap();
        let _: () = ::redis::cmd("SET").arg(key).arg(value).query_async(admin).await.unwrap();
    };
    for value in ["garbage", "nan", ""] {
        set(&mut admin, value).await;
        assert_eq!(from("10.0.0.1").await.status, 200, "{value:?} is no counter");
        assert_eq!(from("10.0.0.2").await.status, 200, "another client, after {value:?}");
    }
    let _: () = ::redis::cmd("DEL").arg(key).query_async(&mut admin).await.unwrap();
    let _: () = ::redis::cmd("HSET").arg(key).arg("f").arg("v").query_async(&mut admin).await.unwrap();
    assert_eq!(from("10.0.0.1").await.status, 200, "a hash is no counter");
    assert_eq!(from("10.0.0.3").await.status, 200);
    for value in ["inf", "1e300", "99999999999999999"] {
        set(&mut admin, value).await;
        let r = from("10.0.0.1").await;
        assert_eq!(r.status, 429, "{value:?}");
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{value:?}: one interval of 1/min at most, got {retry}");
        let ttl: i64 = ::redis::cmd("PTTL").arg(key).query_async(&mut admin).await.unwrap();
        assert!(ttl > 0 && ttl <= 660_000, "{value:?}: the cut counter expires, PTTL {ttl}");
        assert_eq!(from("10.0.0.4").await.status, 200, "the store still answers for others");
    }
}

/// A server on the Redis URL that answers every script with `reply`
/// (RESP) and every other command `+OK`.
async fn fake_redis(reply: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (r, mut w) = s.into_split();
                let mut r = BufReader::new(r);
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let Some(n) = line.trim_end().strip_prefix('*').and_then(|n| n.parse::<usize>().ok()) else {
                        return;
                    };
                    let mut words = Vec::new();
                    for _ in 0..n {
                        line.clear();
                        r.read_line(&mut line).await.unwrap();
                        let len: usize = line.trim_end()[1..].parse().unwrap();
                        let mut word = vec![0u8; len + 2];
                        r.read_exact(&mut word).await.unwrap();
                        words.push(String::from_utf8_lossy(&word[..len]).to_uppercase());
                    }
                    let answer = if words.first().is_some_and(|c| c.starts_with("EVAL")) { reply } else { "+OK\r\n" };
                    if w.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An answer from "Redis" that no script of the gateway gives (numbers
/// past the limit's range, a negative wait) is the store failing: the
/// limit's `on_store_error` applies (503 when closed). It panicked the
/// request (a multiplication overflowed), or was taken as a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_answer_out_of_range_is_a_store_failure() {
    let up = Upstream::start("svc").await;
    for reply in [
        "*4\r\n:9223372036854775807\r\n:9223372036854775807\r\n:9223372036854775807\r\n:9223372036854775807\r\n",
        "*4\r\n:0\r\n:9223372036854775807\r\n:9223372036854775807\r\n:9223372036854775807\r\n",
        "*4\r\n:-5\r\n:-99999\r\n:-1\r\n:0\r\n",
        // Admitted past the burst (9 minutes of 1/min), or refused within it: no script says so.
        "*4\r\n:1\r\n:600000000\r\n:0\r\n:600000000\r\n",
        "*4\r\n:0\r\n:2000000\r\n:0\r\n:2000000\r\n",
        // Admitted with nothing to drain: a full burst and more would be left.
        "*4\r\n:1\r\n:0\r\n:0\r\n:0\r\n",
    ] {
        let redis = fake_redis(reply).await;
        let yaml = format!(
            "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nrate_limit_store:\n  redis: {{ url: \"redis://{redis}\", timeout: 200ms }}\nupstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nroutes:\n  - name: api\n    match: {{ path_prefix: / }}\n    upstream: svc\n    rate_limit: [ {{ key: ip, rate: 1/min, burst: 9, on_store_error: closed }} ]\n",
            up.url()
        );
        let (_g, addr) = spawn_gateway(&yaml);
        let r = get(&format!("http://{addr}/"), &[]).await;
        assert_eq!(r.status, 503, "{reply:?}");
    }
}

/// A quota counter in Redis that `INCR` cannot count: one at or past the
/// limit (`inf`, `1e300`) is a spent quota (it started a fresh window);
/// a negative one or no number starts the count again (a negative one
/// failed the store on every request until it climbed back to 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_redis_quota_counters_fail_closed_when_large_and_restart_when_not() {
    let redis = Redis::start();
    let up = Upstream::start("svc").await;
    let yaml = format!(
        "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nrate_limit_store:\n  redis: {{ url: \"{}\", timeout: 200ms }}\nupstreams:\n  svc: {{ targets: [ \"{}\" ] }}\nroutes:\n  - name: api\n    match: {{ path_prefix: / }}\n    upstream: svc\n    quota: [ {{ key: ip, limit: 3, per: hour, on_store_error: closed }} ]\n",
        redis.url(),
        up.url()
    );
    let (_g, addr) = spawn_gateway(&yaml);
    let call = || async move { get(&format!("http://{addr}/"), &[]).await };
    assert_eq!(call().await.status, 200);
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*quota*").query_async(&mut admin).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    let set = async |admin: &mut ::redis::aio::MultiplexedConnection, value: &str| {
        let _: () = ::redis::cmd("SET").arg(key).arg(value).query_async(admin).await.unwrap();
    };
    for value in ["inf", "1e300", "99999999999999999999999"] {
        set(&mut admin, value).await;
        assert_eq!(call().await.status, 429, "{value:?}: spent");
    }
    for value in ["-5", "garbage", "2.5"] {
        set(&mut admin, value).await;
        assert_eq!(call().await.status, 200, "{value:?}: counted again from 1");
        let count: String = ::redis::cmd("GET").arg(key).query_async(&mut admin).await.unwrap();
        assert_eq!(count, "1", "{value:?}");
        let ttl: i64 = ::redis::cmd("TTL").arg(key).query_async(&mut admin).await.unwrap();
        assert!(ttl > 0, "{value:?}: the window's expiry, TTL {ttl}");
    }
}

/// A quota counter's expiry is the time left in its window, relative: an
/// instance whose clock is behind Redis's gave an absolute end that was
/// already past by Redis's clock, and Redis deleted the counter at each
/// count (every request was the window's first: the quota never held).
/// Here the window is named by a number from long ago, as a lagging clock
/// would name it, with a minute left.
#[tokio::test]
async fn a_quota_counts_in_redis_whatever_the_instances_clock_says() {
    let redis = Redis::start();
    let store = portcullis::bench::RedisStore::new(&redis.url(), "t:", Duration::from_secs(2)).unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(store.quota(b"client", 5, 60, 2).await.unwrap());
    }
    assert_eq!(seen, [(true, 1), (true, 2), (false, 2)]);
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut admin = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*quota*").query_async(&mut admin).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let ttl: i64 = ::redis::cmd("TTL").arg(&keys[0]).query_async(&mut admin).await.unwrap();
    assert!((58..=60).contains(&ttl), "the window's time left: {ttl}");
}

/// Limits sharing a `name` with different rates: each applies its own rate
/// to the one budget, and the faster one does not cut the budget the
/// slower one spent (a route at 1/min admitted a request every few tenths
/// of a second beside one at 10/s).
#[tokio::test]
async fn a_shared_budget_is_not_refilled_by_a_faster_limit_on_it() {
    let gw = gateway(
        r#"
routes:
  - { name: slow, match: { path: /slow }, static: { body: ok }, rate_limit: [ { name: mixed, key: ip, rate: 1/min } ] }
  - { name: fast, match: { path: /fast }, static: { body: ok }, rate_limit: [ { name: mixed, key: ip, rate: 10/s } ] }
"#,
    )
    .await;
    assert_eq!(get(&gw.url("/slow"), &[]).await.status, 200);
    assert_eq!(get(&gw.url("/slow"), &[]).await.status, 429);
    assert_eq!(get(&gw.url("/fast"), &[]).await.status, 429, "the budget is spent for a minute");
    // Longer than the fast limit's step (100 ms), far shorter than the slow one's.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    assert_eq!(get(&gw.url("/slow"), &[]).await.status, 429);
}

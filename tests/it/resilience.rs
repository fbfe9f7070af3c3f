//! Upstream resilience, observed from outside: real upstreams told to fail,
//! hang or answer slowly; what the client gets and what the upstreams saw.
//! (The clocks of ejection, budgets and the breaker are unit-tested with a
//! hand-driven clock in `src/upstream/`; here short real times are used,
//! waited for by polling, never by a fixed sleep that hopes.)

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use prometheus_parse::{Scrape, Value};

use crate::support::flaky::{Flaky, Mode};
use crate::support::{Gateway1, Reply, closed_port, gateway, get, http1_client, send};

async fn post(gw: &Gateway1, path: &str, body: Vec<u8>) -> Reply {
    let req = Request::post(gw.url(path)).body(Full::new(Bytes::from(body))).unwrap();
    send(&http1_client(), req).await
}

fn problem_type(reply: &Reply) -> String {
    reply.json()["type"].as_str().unwrap_or_default().to_string()
}

/// A gateway whose one route proxies everything to the upstream `svc`
/// made of `targets`, with `settings` (YAML lines of the upstream's keys).
async fn svc(targets: &[&Flaky], settings: &str) -> Gateway1 {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{}\"", t.url())).collect();
    let settings: String = settings.lines().map(|l| format!("    {l}\n")).collect();
    gateway(&format!(
        "admin: {{ bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc:\n    targets: [ {} ]\n{settings}routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n",
        list.join(", ")
    ))
    .await
}

/// Polls `cond` every 20 ms for up to 5 s.
async fn eventually(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < until {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within 5 s: {what}");
}

/// `portcullis_upstream_connections{upstream="svc",state="pending"}`:
/// requests waiting for a connection under `limits.max_connections`.
async fn pending(gw: &Gateway1) -> f64 {
    let url = format!("http://{}/metrics", gw.handle.admin_addr().expect("admin"));
    let text = get(&url, &[]).await.text();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format");
    let sample = scrape.samples.iter().find(|s| {
        s.metric == "portcullis_upstream_connections"
            && s.labels.get("upstream") == Some("svc")
            && s.labels.get("state") == Some("pending")
    });
    match sample.map(|s| &s.value) {
        Some(Value::Gauge(n)) => *n,
        other => panic!("no pending gauge: {other:?}"),
    }
}

/// Which upstream answered each of `n` GETs (`x-upstream`), counted.
async fn spread(gw: &Gateway1, n: usize) -> (usize, usize) {
    let mut counts = (0, 0);
    for _ in 0..n {
        let r = get(&gw.url("/x"), &[]).await;
        match r.header("x-upstream") {
            Some("a") => counts.0 += 1,
            Some("b") => counts.1 += 1,
            _ => {}
        }
    }
    counts
}

#[tokio::test]
async fn passive_checks_eject_a_failing_target_and_let_it_back() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    let gw =
        svc(&[&a, &b], "health: { passive: { consecutive_failures: 2, base_ejection: 300ms, max_ejection: 10s } }")
            .await;
    b.set(Mode::Status(503));
    // Round robin: b fails twice (its answers reach the client), then is out.
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..20 {
            v.push(get(&gw.url("/x"), &[]).await.status.as_u16());
        }
        v
    };
    assert_eq!(b.hits(), 2, "ejected after two failures in a row: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 2);
    assert_eq!(a.hits(), 18);
    // It recovers; once its ejection is over it gets traffic again.
    b.set(Mode::Ok);
    eventually("b serves again", async || spread(&gw, 4).await.1 > 0).await;
}

/// Targets that may not take requests leave their share to the others
/// evenly, not to the one after them in the list (which would get three
/// shares of four here).
#[tokio::test]
async fn ejected_targets_share_out_evenly() {
    let (a, b, c, d) =
        (Flaky::start("a").await, Flaky::start("b").await, Flaky::start("c").await, Flaky::start("d").await);
    b.set(Mode::Status(503));
    c.set(Mode::Status(503));
    let gw = svc(
        &[&a, &b, &c, &d],
        "retry: { attempts: 1 }\nhealth: { passive: { consecutive_failures: 1, base_ejection: 60s, max_ejected: 50% } }",
    )
    .await;
    eventually("b and c ejected", async || {
        get(&gw.url("/x"), &[]).await;
        b.hits() >= 1 && c.hits() >= 1
    })
    .await;
    b.set(Mode::Ok);
    c.set(Mode::Ok);
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        let r = get(&gw.url("/x"), &[]).await;
        *counts.entry(r.header("x-upstream").unwrap_or("-").to_string()).or_default() += 1;
    }
    assert_eq!((counts.get("a"), counts.get("d")), (Some(&20), Some(&20)), "{counts:?}");
}

/// A failing target's retries go through the balancer among the targets
/// not tried yet (as Envoy's retries avoid previous hosts), not all to its
/// neighbour in the list, which got twice its share here.
#[tokio::test]
async fn retries_spread_over_the_targets_not_tried() {
    // With least_request, ties (an idle pool) rotate: the retries once took
    // the first tries' turn, so they all went to a's neighbour, and it got
    // no first tries.
    for balance in ["round_robin", "least_request"] {
        let (a, b, c, d) =
            (Flaky::start("a").await, Flaky::start("b").await, Flaky::start("c").await, Flaky::start("d").await);
        a.set(Mode::Status(503));
        let gw =
            svc(&[&a, &b, &c, &d], &format!("balance: {balance}\nretry: {{ attempts: 2, on: [ \"503\" ] }}")).await;
        for _ in 0..40 {
            assert_eq!(get(&gw.url("/x"), &[]).await.status, 200);
        }
        // a's 10 requests were retried: b, c and d each took some of them.
        assert_eq!(a.hits(), 10, "{balance}");
        let (b, c, d) = (b.hits(), c.hits(), d.hits());
        assert_eq!(b + c + d, 40, "{balance}: {b} {c} {d}");
        assert!(b < 15 && c > 10 && d > 10, "{balance}: the retries went to a's neighbour: {b} {c} {d}");
    }
}

/// With `consistent_hash`, the keys of a target out of service spread over
/// the others (the next point on the ring), each key staying on its one
/// stand-in, instead of all going to the next target in the list.
#[tokio::test]
async fn the_keys_of_an_ejected_target_spread_over_the_others() {
    let (a, b, c) = (Flaky::start("a").await, Flaky::start("b").await, Flaky::start("c").await);
    let gw = svc(
        &[&a, &b, &c],
        "balance: { consistent_hash: { header: X-Tenant } }\nretry: { attempts: 1 }\n\
         health: { passive: { consecutive_failures: 1, base_ejection: 60s } }",
    )
    .await;
    let owner = async |key: &str| get(&gw.url("/x"), &[("x-tenant", key)]).await.header("x-upstream").map(String::from);
    let mut keys_of_b = Vec::new();
    for k in 0..200 {
        let key = format!("tenant-{k}");
        if owner(&key).await.as_deref() == Some("b") {
            keys_of_b.push(key);
        }
    }
    assert!(keys_of_b.len() > 30, "{}", keys_of_b.len());
    b.set(Mode::Status(503));
    eventually("b ejected", async || owner(&keys_of_b[0]).await.as_deref() != Some("b")).await;
    let mut stand_ins: HashMap<String, usize> = HashMap::new();
    for key in &keys_of_b {
        let first = owner(key).await.unwrap();
        assert_eq!(owner(key).await.unwrap(), first, "{key} moved between stand-ins");
        *stand_ins.entry(first).or_default() += 1;
    }
    assert!(stand_ins.get("a").is_some_and(|&n| n > 5) && stand_ins.get("c").is_some_and(|&n| n > 5), "{stand_ins:?}");
}

/// The same with weights: a heavy target out of service leaves its share
/// to the others in their weights (the schedule's runs of the heavy one
/// once outlasted the re-picks, and the next target in the list took them).
#[tokio::test]
async fn an_ejected_heavy_target_shares_out_by_weight() {
    let (a, b, c) = (Flaky::start("a").await, Flaky::start("b").await, Flaky::start("c").await);
    a.set(Mode::Status(503));
    let gw = gateway(&format!(
        "upstreams:\n  svc:\n    targets: [ {{ url: \"{}\", weight: 5 }}, \"{}\", \"{}\" ]\n    \
         retry: {{ attempts: 1 }}\n    health: {{ passive: {{ consecutive_failures: 1, base_ejection: 60s }} }}\n\
         routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n",
        a.url(),
        b.url(),
        c.url()
    ))
    .await;
    eventually("a ejected", async || {
        get(&gw.url("/x"), &[]).await;
        a.hits() >= 1
    })
    .await;
    // Six whole turns of the 5:1:1 schedule (whatever its phase): b and c
    // keep their own six picks each and split a's thirty evenly.
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..42 {
        let r = get(&gw.url("/x"), &[]).await;
        *counts.entry(r.header("x-upstream").unwrap_or("-").to_string()).or_default() += 1;
    }
    assert_eq!((counts.get("a"), counts.get("b"), counts.get("c")), (None, Some(&21), Some(&21)), "{counts:?}");
}

#[tokio::test]
async fn observe_only_passive_checks_eject_nothing() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    let gw =
        svc(&[&a, &b], "health: { passive: { consecutive_failures: 2, base_ejection: 30s, enforce: false } }").await;
    b.set(Mode::Status(503));
    for _ in 0..20 {
        get(&gw.url("/x"), &[]).await;
    }
    assert_eq!((a.hits(), b.hits()), (10, 10));
}

#[tokio::test]
async fn active_checks_take_a_target_out_and_bring_it_back() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    let gw = svc(
        &[&a, &b],
        "health: { active: { path: /healthz, interval: 30ms, timeout: 500ms, healthy: 2, unhealthy: 2 } }",
    )
    .await;
    eventually("both are probed", async || a.health_hits() >= 2 && b.health_hits() >= 2).await;
    assert_eq!(spread(&gw, 10).await, (5, 5));
    b.set_health(500);
    eventually("b is taken out", async || spread(&gw, 6).await == (6, 0)).await;
    let before = b.hits();
    spread(&gw, 10).await;
    assert_eq!(b.hits(), before, "an unhealthy target gets no requests");
    b.set_health(200);
    eventually("b is back", async || spread(&gw, 4).await.1 == 2).await;
    // A 200 whose body breaks off is a failed probe, as a proxied
    // response's would be a failed request.
    b.set_health_breaks_off(true);
    eventually("b is taken out again", async || spread(&gw, 6).await == (6, 0)).await;
}

#[tokio::test]
async fn all_unhealthy_serves_all_or_fails_as_configured() {
    let a = Flaky::start("a").await;
    a.set_health(503);
    let config = |mode: &str| {
        format!(
            r#"
upstreams:
  svc:
    targets: [ "{}" ]
    health: {{ active: {{ interval: 30ms, unhealthy: 1 }}, all_unhealthy: {mode} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}
"#,
            a.url()
        )
    };
    let gw = gateway(&config("serve_all")).await;
    eventually("served although unhealthy", async || {
        let r = get(&gw.url("/x"), &[]).await;
        r.status == 200 && r.header("portcullis-upstream-health") == Some("all-unhealthy")
    })
    .await;
    let gw = gateway(&config("fail")).await;
    eventually("refused", async || get(&gw.url("/x"), &[]).await.status == 503).await;
    let before = a.hits();
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!(problem_type(&r), "urn:portcullis:problem:no-healthy-target");
    assert_eq!(a.hits(), before, "nothing was sent");
}

#[tokio::test]
async fn retries_happen_only_where_allowed() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    a.set(Mode::Status(503));
    let gw = svc(&[&a, &b], r#"retry: { attempts: 2, on: [ "503" ], backoff: { base: 1ms, max: 2ms } }"#).await;
    // GET is idempotent: every one that met `a` was tried again on `b`.
    let mut retried = 0;
    for _ in 0..10 {
        let r = get(&gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-upstream"), Some("b"));
        match r.header("portcullis-tries") {
            None => {}
            Some("2") => retried += 1,
            other => panic!("tries: {other:?}"),
        }
    }
    assert_eq!(retried, 5, "the response says how many tries were made");
    assert_eq!(a.hits() + b.hits(), 15, "five GETs went to a first, then to b");
    // POST is not: whoever got it answered.
    a.reset_counts();
    b.reset_counts();
    let mut failed = 0;
    for _ in 0..10 {
        let r = post(&gw, "/x", b"{}".to_vec()).await;
        if r.status == 503 {
            assert!(r.header("portcullis-tries").is_none());
            failed += 1;
        }
    }
    assert_eq!((a.hits() + b.hits(), failed), (10, 5));
}

/// `Portcullis-Tries` tells clients how healthy the pool is: a route's
/// `response_headers.remove` keeps it from them (it was added after the
/// response phase, out of the route's reach).
#[tokio::test]
async fn a_route_can_keep_the_tries_header_from_clients() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    a.set(Mode::Status(503));
    let gw = gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"{}\", \"{}\" ], retry: {{ attempts: 2, on: [ \"503\" ] }} }}\n\
         routes:\n  - {{ name: quiet, match: {{ path_prefix: /quiet }}, upstream: svc, response_headers: {{ remove: [ Portcullis-Tries ] }} }}\n\
         \x20 - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n",
        a.url(),
        b.url()
    ))
    .await;
    let told = async |path: &str| {
        let mut told = 0;
        for _ in 0..4 {
            let r = get(&gw.url(path), &[]).await;
            assert_eq!(r.status, 200);
            told += usize::from(r.header("portcullis-tries").is_some());
        }
        told
    };
    assert_eq!(told("/x").await, 2, "two of four met `a` and were tried twice");
    assert_eq!(told("/quiet/x").await, 0);
    assert_eq!(a.hits(), 4);
}

#[tokio::test]
async fn a_connect_failure_goes_to_another_target_by_default() {
    let dead = closed_port().await;
    let b = Flaky::start("b").await;
    let gw = gateway(&format!(
        r#"
upstreams:
  svc: {{ targets: [ "http://{dead}", "{}" ] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}
"#,
        b.url()
    ))
    .await;
    for i in 0..6 {
        // The upstream never saw the request: any method may go elsewhere.
        let r = if i % 2 == 0 { get(&gw.url("/x"), &[]).await } else { post(&gw, "/x", vec![b'x'; 100]).await };
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(b.hits(), 6);
}

#[tokio::test]
async fn per_try_timeouts_move_on_to_the_next_target() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    a.set(Mode::Hang);
    let gw = svc(&[&a, &b], "timeouts: { request: 5s }\nretry: { attempts: 2, on: [ timeout ], per_try_timeout: 200ms, backoff: { base: 1ms, max: 1ms } }").await;
    for _ in 0..2 {
        let started = tokio::time::Instant::now();
        let r = get(&gw.url("/x"), &[]).await;
        assert_eq!((r.status.as_u16(), r.header("x-upstream")), (200, Some("b")));
        assert!(started.elapsed() < Duration::from_secs(3), "the hanging try was cut at its own timeout");
    }
    assert_eq!(a.hits(), 1);
}

#[tokio::test]
async fn a_body_longer_than_the_replay_buffer_is_not_retried() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    a.set(Mode::Reset);
    let gw = svc(
        &[&a, &b],
        "retry: { attempts: 2, on: [ reset ], methods: [ PUT ], buffer: 1KiB, backoff: { base: 1ms, max: 1ms } }",
    )
    .await;
    let put = |len: usize| {
        let req = Request::put(gw.url("/x")).body(Full::new(Bytes::from(vec![b'x'; len]))).unwrap();
        async move { send(&http1_client(), req).await }
    };
    // Small bodies are sent again to b, whole.
    for _ in 0..4 {
        let r = put(500).await;
        assert_eq!(r.status, 200);
        let seen = b.last_request().expect("b saw it");
        assert_eq!(seen.headers.get("content-length").and_then(|v| v.to_str().ok()), Some("500"));
    }
    // A body larger than the buffer cannot be: the reset reaches the client.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(put(4096).await.status.as_u16());
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 502, 502]);
}

/// Both targets answer 503 to everything; each request would like two retries.
async fn outage_retries(a: &Flaky, b: &Flaky, budget: &str) -> usize {
    let settings =
        format!("retry:\n  attempts: 3\n  on: [ \"503\" ]\n  backoff: {{ base: 1ms, max: 1ms }}\n  budget: {budget}");
    let gw = svc(&[a, b], &settings).await;
    a.reset_counts();
    b.reset_counts();
    for _ in 0..50 {
        assert_eq!(get(&gw.url("/x"), &[]).await.status, 503);
    }
    a.hits() + b.hits() - 50
}

#[tokio::test]
async fn the_budget_caps_retries_under_a_full_outage() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    a.set(Mode::Status(503));
    b.set(Mode::Status(503));
    // Unbudgeted, 50 requests would make 100 retries. 10% of the requests
    // seen: a retry at the 1st, 11th, 21st, 31st and 41st request.
    assert_eq!(outage_retries(&a, &b, "{ ratio: 10%, min_per_second: 0, window: 60s }").await, 5);
    // The reserve alone: 1 a second over 10 s.
    assert_eq!(outage_retries(&a, &b, "{ ratio: 0%, min_per_second: 1, window: 10s }").await, 10);
}

#[tokio::test]
async fn the_breaker_opens_answers_at_once_half_opens_and_closes() {
    let a = Flaky::start("a").await;
    a.set(Mode::Status(500));
    let gw = svc(&[&a], "breaker: { consecutive_failures: 3, open_for: 300ms }").await;
    for _ in 0..3 {
        assert_eq!(get(&gw.url("/x"), &[]).await.status, 500);
    }
    // Open: 503 at once, the upstream untouched.
    for _ in 0..5 {
        let r = get(&gw.url("/x"), &[]).await;
        assert_eq!(r.status, 503);
        assert_eq!(problem_type(&r), "urn:portcullis:problem:circuit-open");
        // When the probe may go, in whole seconds rounded up (RFC 9110 §10.2.3).
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    assert_eq!(a.hits(), 3);
    // After `open_for`, one probe: still failing, so open again.
    eventually("a probe is let through", async || a.hits() == 4 || get(&gw.url("/x"), &[]).await.status == 500).await;
    assert_eq!(a.hits(), 4);
    assert_eq!(problem_type(&get(&gw.url("/x"), &[]).await), "urn:portcullis:problem:circuit-open");
    // Recovered: the next probe succeeds and closes it.
    a.set(Mode::Ok);
    eventually("closed again", async || get(&gw.url("/x"), &[]).await.status == 200).await;
    for _ in 0..5 {
        assert_eq!(get(&gw.url("/x"), &[]).await.status, 200);
    }
}

#[tokio::test]
async fn limits_refuse_at_exactly_the_configured_number() {
    let a = Flaky::start("a").await;
    a.set(Mode::Slow(Duration::from_millis(600)));
    let gw = svc(&[&a], "limits: { max_requests: 2 }").await;
    let url = gw.url("/x");
    let slow: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn({
                let url = url.clone();
                async move { get(&url, &[]).await.status.as_u16() }
            })
        })
        .collect();
    eventually("two in flight", async || a.hits() == 2).await;
    let started = tokio::time::Instant::now();
    let r = get(&url, &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(problem_type(&r), "urn:portcullis:problem:upstream-max-requests");
    assert_eq!(r.header("retry-after"), None, "no time is known when a place comes free");
    assert!(started.elapsed() < Duration::from_millis(300), "refused at once, not queued");
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
    assert_eq!(get(&url, &[]).await.status, 200, "slots come back");
}

/// A reload keeps counting the requests the old config has in flight:
/// `max_requests` is not doubled by changing an upstream's settings.
#[tokio::test]
async fn a_reload_keeps_counting_requests_in_flight() {
    let a = Flaky::start("a").await;
    a.set(Mode::Slow(Duration::from_millis(800)));
    let config = |extra: &str| {
        format!(
            "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc:\n    targets: [ \"{}\" ]\n    \
             limits: {{ max_requests: 2 }}{extra}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n",
            a.url()
        )
    };
    let base = std::path::Path::new(".");
    let gw = portcullis::Gateway::start(&crate::support::load(&config(""), base)).await.unwrap();
    let url = format!("http://{}/x", gw.addr("gw").unwrap());
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&url, &[]).await.status.as_u16() })
        })
        .collect();
    eventually("two in flight", async || a.hits() == 2).await;
    gw.reload(&crate::support::load(&config("\n    timeouts: { connect: 2s }"), base)).await.unwrap();
    let r = get(&url, &[]).await;
    assert_eq!((r.status.as_u16(), problem_type(&r)), (503, "urn:portcullis:problem:upstream-max-requests".into()));
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
    assert_eq!(get(&url, &[]).await.status, 200, "the old config's requests gave their places back");
}

/// A retry takes a `max_requests` place again, once the failed try has let
/// go of its own: with room for one, a try that failed is still retried.
#[tokio::test]
async fn a_retry_takes_the_place_its_failed_try_left() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    a.set(Mode::Reset);
    let settings =
        "limits: { max_requests: 1 }\nretry: { attempts: 2, on: [ reset ], backoff: { base: 1ms, max: 1ms } }";
    let gw = svc(&[&a, &b], settings).await;
    for _ in 0..4 {
        let r = get(&gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-upstream"), Some("b"));
    }
    assert!(a.hits() >= 1, "some request met `a` first");
}

#[tokio::test]
async fn max_connections_and_max_pending() {
    let a = Flaky::start("a").await;
    a.set(Mode::Slow(Duration::from_millis(400)));
    let gw = svc(&[&a], "limits: { max_connections: 1, max_pending: 1 }").await;
    let url = gw.url("/x");
    let first = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await.status.as_u16() }
    });
    eventually("the one connection is busy", async || a.hits() == 1).await;
    let second = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await.status.as_u16() }
    });
    // The second waits for the connection; a third may not wait too.
    eventually("the second waits for the connection", async || pending(&gw).await == 1.0).await;
    let r = get(&url, &[]).await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(problem_type(&r), "urn:portcullis:problem:upstream-max-pending");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200, "the waiting request got the connection");
    assert_eq!(a.hits(), 2);
    assert_eq!(pending(&gw).await, 0.0, "nothing waits once both are answered");
}

#[tokio::test]
async fn retry_config_mistakes_are_refused_with_their_path() {
    let cases = [
        ("retry: { attempts: 0 }", "upstreams.svc.retry.attempts"),
        ("retry: { on: [ sometimes ] }", "sometimes"),
        ("retry: { budget: { ratio: 20 } }", "20%"),
        ("limits: { max_pending: 5 }", "upstreams.svc.limits.max_pending"),
        ("breaker: { consecutive_failures: 0 }", "upstreams.svc.breaker"),
        ("health: { active: { expect: [ \"2xx\" ] } }", "upstreams.svc.health.active.expect[0]"),
    ];
    for (snippet, expected) in cases {
        let yaml = format!(
            "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc:\n    targets: [ \"http://127.0.0.1:9\" ]\n    {snippet}\nroutes:\n  - {{ name: r, match: {{ path_prefix: / }}, upstream: svc }}\n"
        );
        let err = match portcullis::config::parse_str(&yaml, "test.yaml", std::path::Path::new(".")) {
            Err(e) => e.to_string(),
            Ok(loaded) => match portcullis::check(&loaded) {
                Err(e) => e.to_string(),
                Ok(()) => panic!("accepted: {snippet}"),
            },
        };
        assert!(err.contains(expected), "{snippet}: {err}");
    }
}

#[tokio::test]
async fn the_resilience_example_composes_and_retries() {
    let users = [Flaky::start("users-1").await, Flaky::start("users-2").await];
    let (orders, recs) = (Flaky::start("orders").await, Flaky::start("recs").await);
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/resilience.yaml"))
            .unwrap()
            .replace("127.0.0.1:8082", "127.0.0.1:0")
            .replace("http://127.0.0.1:9001", &users[0].url())
            .replace("http://127.0.0.1:9002", &users[1].url())
            .replace("http://127.0.0.1:9011", &orders.url())
            .replace("http://127.0.0.1:9021", &recs.url());
    let h = portcullis::Gateway::start(&crate::support::load(&text, std::path::Path::new(".")))
        .await
        .expect("the example starts");
    let base = format!("http://{}", h.addrs()[0].1);
    for u in &users {
        u.set(Mode::Json(r#"{"id":42,"name":"ann"}"#));
    }
    orders.set(Mode::Json(r#"[{"id":1,"total":5,"status":"paid","card":"4111"}]"#));
    let r = get(&format!("{base}/dashboard/42"), &[]).await;
    assert_eq!(r.header("portcullis-aggregate"), Some("complete"), "{}", r.text());
    let doc = r.json();
    assert_eq!(doc["orders"], serde_json::json!([{ "id": 1, "total": 5, "status": "paid" }]));
    assert_eq!(doc["recommendations"]["upstream"], "recs");
    // One users target fails: GETs are retried on the other.
    users[0].set(Mode::Status(503));
    for _ in 0..4 {
        let r = get(&format!("{base}/users/42"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-upstream"), Some("users-2"));
    }
}

#[tokio::test]
async fn a_reload_does_not_bring_an_ejected_target_back() {
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    let config = |extra: &str| {
        format!(
            r#"
listeners:
  - {{ name: gw, bind: "127.0.0.1:0" }}
upstreams:
  svc:
    targets: [ "{}", "{}" ]
    health: {{ passive: {{ consecutive_failures: 1, base_ejection: 30s }} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc{extra} }}
"#,
            a.url(),
            b.url()
        )
    };
    let base = std::path::Path::new(".");
    let gw = portcullis::Gateway::start(&crate::support::load(&config(""), base)).await.unwrap();
    let url = format!("http://{}/x", gw.addr("gw").unwrap());
    b.set(Mode::Status(503));
    for _ in 0..4 {
        get(&url, &[]).await;
    }
    assert_eq!(b.hits(), 1, "ejected after its first failure");
    b.set(Mode::Ok);
    // A new config (a route changed), the same targets: b stays out.
    gw.reload(&crate::support::load(&config(", preserve_host: false"), base)).await.unwrap();
    for _ in 0..6 {
        assert_eq!(get(&url, &[]).await.header("x-upstream"), Some("a"));
    }
    assert_eq!(b.hits(), 1);
}

/// A reload that removes a target stops its probes at once, even while a
/// client keeps a connection open that it made before the reload (that
/// connection held the replaced config, and its probes ran until it closed).
#[tokio::test]
async fn a_reload_stops_the_probes_of_the_config_it_replaced() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, b) = (Flaky::start("a").await, Flaky::start("b").await);
    let config = |targets: &[&Flaky]| {
        let list: Vec<String> = targets.iter().map(|t| format!("\"{}\"", t.url())).collect();
        format!(
            "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc:\n    targets: [ {} ]\n    \
             health: {{ active: {{ path: /healthz, interval: 20ms }} }}\nroutes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n",
            list.join(", ")
        )
    };
    let base = std::path::Path::new(".");
    let gw = portcullis::Gateway::start(&crate::support::load(&config(&[&a, &b]), base)).await.unwrap();
    let addr = gw.addr("gw").unwrap();
    eventually("b is probed", async || b.health_hits() >= 2).await;
    // A keep-alive connection, open across the reload.
    let mut held = tokio::net::TcpStream::connect(addr).await.unwrap();
    held.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    assert!(held.read(&mut buf).await.unwrap() > 0);
    gw.reload(&crate::support::load(&config(&[&a]), base)).await.unwrap();
    // A probe that had started may still land.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (b_after, a_after) = (b.health_hits(), a.health_hits());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.health_hits(), b_after, "a removed target is probed no more");
    // Kept targets are probed by the new config only: about 15 in 300 ms, not twice that.
    let a_probes = a.health_hits() - a_after;
    assert!((5..=22).contains(&a_probes), "{a_probes} probes of a in 300 ms at a 20 ms interval");
    // The held connection is served by the new config.
    held.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    held.read_to_end(&mut rest).await.unwrap();
    assert!(String::from_utf8_lossy(&rest).contains("x-upstream: a"), "{}", String::from_utf8_lossy(&rest));
}

/// A reload in the middle of an outage keeps an open breaker open (the
/// upstream is not hit again by every request a reload would let through);
/// a breaker with other settings starts closed.
#[tokio::test]
async fn an_open_breaker_stays_open_across_a_reload_with_the_same_settings() {
    let a = Flaky::start("a").await;
    a.set(Mode::Status(500));
    let config = |breaker: &str, extra: &str| {
        format!(
            "listeners:\n  - {{ name: gw, bind: \"127.0.0.1:0\" }}\nupstreams:\n  svc:\n    targets: [ \"{}\" ]\n    breaker: {breaker}\n\
             routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc{extra} }}\n",
            a.url()
        )
    };
    let same = "{ consecutive_failures: 2, open_for: 1h }";
    let base = std::path::Path::new(".");
    let gw = portcullis::Gateway::start(&crate::support::load(&config(same, ""), base)).await.unwrap();
    let url = format!("http://{}/x", gw.addr("gw").unwrap());
    for _ in 0..2 {
        assert_eq!(get(&url, &[]).await.status, 500);
    }
    assert_eq!(get(&url, &[]).await.status, 503, "open");
    // A route changed, the breaker did not: still open, the upstream untouched.
    gw.reload(&crate::support::load(&config(same, ", preserve_host: false"), base)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(problem_type(&get(&url, &[]).await), "urn:portcullis:problem:circuit-open");
    }
    assert_eq!(a.hits(), 2);
    // Other breaker settings: a new breaker, closed.
    gw.reload(&crate::support::load(&config("{ consecutive_failures: 3, open_for: 1h }", ""), base)).await.unwrap();
    assert_eq!(get(&url, &[]).await.status, 500);
    assert_eq!(a.hits(), 3);
}

/// A request that waited for one of the upstream's `max_connections` and
/// got none in time is answered 504, but the target did nothing wrong: its
/// passive health does not count it (one failure would eject it here, and
/// the next answer would say `all-unhealthy`).
#[tokio::test]
async fn waiting_for_a_free_connection_is_not_the_targets_failure() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = Flaky::start("a").await;
    let gw = svc(
        &[&a],
        "timeouts: { request: 1s }\nlimits: { max_connections: 1, max_pending: 2 }\n\
         health: { passive: { consecutive_failures: 1, base_ejection: 30s } }",
    )
    .await;
    // The one connection stays busy with a response whose head came at
    // once (within the timeout) and whose body stalls.
    a.set(Mode::StallBody);
    let mut holder = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    holder.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut head = [0u8; 64];
    assert!(holder.read(&mut head).await.unwrap() > 0, "the head came");
    a.set(Mode::Ok);
    let url = gw.url("/x");
    let waited = get(&url, &[]).await;
    assert_eq!(waited.status, 504, "{}", waited.text());
    assert_eq!(a.hits(), 1, "the waiting request never reached the target");
    // Once the holder leaves, its connection is free again.
    drop(holder);
    let next = get(&url, &[]).await;
    assert_eq!(next.status, 200, "{}", next.text());
    assert_eq!(next.header("portcullis-upstream-health"), None, "the target was not ejected");
}

/// The wait for a free connection is part of `timeouts.request`, as the
/// docs say: a request that waited 700 ms of its 1 s has 300 ms left for
/// the exchange (504), not a fresh second (it was answered after 1.4 s,
/// and up to twice the timeout was possible).
#[tokio::test]
async fn the_wait_for_a_free_connection_counts_against_the_request_timeout() {
    let a = Flaky::start("a").await;
    a.set(Mode::Slow(Duration::from_millis(700)));
    let gw = svc(
        &[&a],
        "timeouts: { request: 1s }\nlimits: { max_connections: 1, max_pending: 1 }\n\
         health: { passive: { consecutive_failures: 1, base_ejection: 30s } }",
    )
    .await;
    let url = gw.url("/x");
    let first = tokio::spawn({
        let url = url.clone();
        async move { get(&url, &[]).await.status.as_u16() }
    });
    eventually("the one connection is busy", async || a.hits() == 1).await;
    let second = get(&url, &[]).await;
    assert_eq!(second.status, 504, "{}", second.text());
    assert_eq!(first.await.unwrap(), 200);
    // The target had 300 ms of the second's second: not its failure.
    a.set(Mode::Ok);
    let next = get(&url, &[]).await;
    assert_eq!(next.status, 200);
    assert_eq!(next.header("portcullis-upstream-health"), None, "the target was not ejected");
}

/// An HTTP/2 upstream that refuses a stream (`REFUSED_STREAM`) did not
/// process it (RFC 9113 §8.7): the request goes to another target as after
/// a connect failure (the default retry), not back as a 502.
#[tokio::test]
async fn a_refused_http2_stream_is_tried_elsewhere() {
    // A target that refuses every stream.
    let refusing = crate::support::h2target::start(|_, _req, mut respond| async move {
        respond.send_reset(h2::Reason::REFUSED_STREAM);
    })
    .await;
    let ok = crate::support::Upstream::start("ok").await;
    let gw = gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"http://{refusing}\", \"{}\" ], protocol: http2 }}\n\
         routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n",
        ok.url()
    ))
    .await;
    for _ in 0..4 {
        let r = get(&gw.url("/x"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["server"], "ok");
    }
}

/// A health probe whose answer live requests would get as 502 (a length
/// beside chunked: hyper, which probes, reads it leniently) fails.
#[tokio::test]
async fn a_probe_answer_framed_ambiguously_fails() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let gw = gateway(&format!(
        "upstreams:\n  svc:\n    targets: [ \"http://{addr}\" ]\n    \
         health: {{ active: {{ interval: 30ms, unhealthy: 1 }}, all_unhealthy: fail }}\n\
         routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n"
    ))
    .await;
    eventually("the target is out", async || get(&gw.url("/x"), &[]).await.status == 503).await;
}

/// A retry that would find no target (the try just ejected the last one,
/// `all_unhealthy: fail`) or an open breaker (the try just opened it) is
/// not made: the client gets the last try's answer, the upstream's own.
/// It got a 503 `no-healthy-target` problem with the retry counted as
/// sent, and retries went on to an upstream whose breaker had opened.
#[tokio::test]
async fn no_retry_goes_where_nothing_would_take_it() {
    let a = Flaky::start("a").await;
    a.set(Mode::Status(503));
    let gw = svc(
        &[&a],
        "retry: { attempts: 3, on: [\"503\"] }\n\
         health: { passive: { consecutive_failures: 2, base_ejection: 30s }, all_unhealthy: fail }",
    )
    .await;
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["upstream"], "a", "the upstream's own answer: {}", r.text());
    assert_eq!((r.header("portcullis-tries"), a.hits()), (Some("2"), 2));

    let (b, c) = (Flaky::start("b").await, Flaky::start("c").await);
    b.set(Mode::Status(503));
    c.set(Mode::Status(503));
    let gw =
        svc(&[&b, &c], "retry: { attempts: 5, on: [\"503\"] }\nbreaker: { consecutive_failures: 2, open_for: 30s }")
            .await;
    let r = get(&gw.url("/x"), &[]).await;
    assert_eq!(r.status, 503);
    assert!(r.json()["upstream"].is_string(), "the upstream's own answer: {}", r.text());
    assert_eq!((r.header("portcullis-tries"), b.hits() + c.hits()), (Some("2"), 2), "none after the breaker opened");
}

/// A target that answers a connection's first stream and refuses the
/// others (`REFUSED_STREAM`, shedding load) gets a request's stream a few
/// times, then the request fails at once: the resends after a connection
/// that answered something count for a refused stream (it stays on its
/// connection), unlike after a `GOAWAY`. They were sent ~17,000 times in
/// a 5 s timeout.
#[tokio::test]
async fn a_target_refusing_streams_is_not_hammered() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let streams = Arc::new(AtomicUsize::new(0));
    let seen = streams.clone();
    let addr = crate::support::h2target::start(move |index, _req, mut respond| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move {
            if index == 0 {
                if let Ok(mut body) = respond.send_response(http::Response::new(()), false) {
                    let _ = body.send_data(bytes::Bytes::from_static(b"ok"), true);
                }
            } else {
                respond.send_reset(h2::Reason::REFUSED_STREAM);
            }
        }
    })
    .await;
    let gw = gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"http://{addr}\" ], protocol: http2, timeouts: {{ request: 5s }} }}\n\
         routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n"
    ))
    .await;
    assert_eq!(get(&gw.url("/first"), &[]).await.status, 200);
    let r = get(&gw.url("/second"), &[]).await;
    assert_eq!(r.status, 502, "{}", r.text());
    let sent = streams.load(Ordering::SeqCst);
    assert!(sent <= 5, "the refused request went {} times", sent - 1);
}

/// Without `limits`, an upstream still takes at most 1,024 requests at once
/// (Envoy's default): a service that stops answering cannot hold every
/// request the clients send it (HTTP/2 clients, 128 streams a connection)
/// and an upstream connection each, up to the gateway's open-file limit.
#[tokio::test]
async fn an_upstream_takes_1024_requests_at_once_by_default() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let target = crate::support::h2target::start({
        let (seen, release) = (seen.clone(), release.clone());
        move |_, _req, mut respond| {
            let (seen, release) = (seen.clone(), release.clone());
            async move {
                seen.fetch_add(1, Ordering::Relaxed);
                let _ = release.acquire().await;
                let _ = respond.send_response(http::Response::new(()), true);
            }
        }
    })
    .await;
    let gw = gateway(&format!(
        "upstreams:\n  svc: {{ targets: [ \"http://{target}\" ], protocol: http2 }}\n\
         routes:\n  - {{ name: all, match: {{ path_prefix: / }}, upstream: svc }}\n"
    ))
    .await;
    // 9 client connections x 120 streams: 1,080 requests at once.
    let mut answers = Vec::new();
    for _ in 0..9 {
        let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        for _ in 0..120 {
            let mut client = client.clone();
            let url = gw.url("/x");
            answers.push(tokio::spawn(async move {
                client = client.ready().await.unwrap();
                let (resp, _) = client.send_request(http::Request::get(url).body(()).unwrap(), true).unwrap();
                let resp = resp.await.unwrap();
                let status = resp.status().as_u16();
                let mut body = resp.into_body();
                let mut text = Vec::new();
                while let Some(Ok(data)) = body.data().await {
                    text.extend_from_slice(&data);
                }
                (status, String::from_utf8_lossy(&text).into_owned())
            }));
        }
    }
    eventually("1,024 requests reach the target", async || seen.load(Ordering::Relaxed) >= 1024).await;
    // The rest are refused at once, while the 1,024 are held.
    eventually("56 answered", async || answers.iter().filter(|a| a.is_finished()).count() >= 56).await;
    let mut refused = 0;
    let mut held = Vec::new();
    for a in answers {
        if a.is_finished() {
            let (status, body) = a.await.unwrap();
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("urn:portcullis:problem:upstream-max-requests"), "{body}");
            refused += 1;
        } else {
            held.push(a);
        }
    }
    assert_eq!(seen.load(Ordering::Relaxed), 1024);
    assert_eq!((refused, held.len()), (56, 1024), "exactly the default's requests are in flight");
    release.add_permits(1080);
    for a in held {
        assert_eq!(a.await.unwrap().0, 200);
    }
}

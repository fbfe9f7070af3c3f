//! Each balancing mode's distribution, measured at the upstreams.

use std::collections::HashMap;

use crate::support::{Upstream, gateway, get};

async fn pool(n: usize) -> Vec<Upstream> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(Upstream::start(&format!("u{i}")).await);
    }
    v
}

async fn servers_for(gw: &crate::support::Gateway1, n: usize, headers: &[(&str, &str)]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let server = get(&gw.url("/x"), headers).await.json()["server"].as_str().unwrap().to_string();
        *seen.entry(server).or_default() += 1;
    }
    seen
}

#[tokio::test]
async fn round_robin_is_even_and_weights_are_exact() {
    let ups = pool(3).await;
    let gw = gateway(&format!(
        r#"
upstreams:
  even: {{ targets: [ "{}", "{}", "{}" ] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: even }}
"#,
        ups[0].url(),
        ups[1].url(),
        ups[2].url()
    ))
    .await;
    let seen = servers_for(&gw, 30, &[]).await;
    assert_eq!(seen.values().copied().collect::<Vec<_>>(), vec![10, 10, 10], "{seen:?}");

    let ups = pool(2).await;
    let gw = gateway(&format!(
        r#"
upstreams:
  weighted: {{ targets: [ "{}", {{ url: "{}", weight: 3 }} ] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: weighted }}
"#,
        ups[0].url(),
        ups[1].url()
    ))
    .await;
    let seen = servers_for(&gw, 40, &[]).await;
    assert_eq!((seen["u0"], seen["u1"]), (10, 30));
}

#[tokio::test]
async fn least_request_avoids_the_busy_target() {
    let ups = pool(2).await;
    let gw = gateway(&format!(
        r#"
upstreams:
  lr: {{ targets: [ "{}", "{}" ], balance: least_request }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: lr }}
"#,
        ups[0].url(),
        ups[1].url()
    ))
    .await;
    // Park two requests on each target.
    let mut parked = Vec::new();
    for i in 1..=4 {
        let url = gw.url("/hold");
        parked.push(tokio::spawn(async move { get(&url, &[]).await }));
        while ups[0].hits() + ups[1].hits() < i {
            tokio::task::yield_now().await;
        }
    }
    assert_eq!((ups[0].hits(), ups[1].hits()), (2, 2));
    // Free u0 only: u1 still has two in flight, so new requests all go to u0.
    ups[0].release();
    // Wait until u0's two requests have completed at the client...
    while parked.iter().filter(|p| p.is_finished()).count() < 2 {
        tokio::task::yield_now().await;
    }
    // ...and the gateway routes to u0 again.
    tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let seen = get(&gw.url("/probe"), &[]).await.json()["server"].as_str().unwrap().to_string();
            if seen == "u0" {
                break;
            }
        }
    })
    .await
    .expect("u0 becomes the least loaded");
    let seen = servers_for(&gw, 10, &[]).await;
    assert_eq!(seen.get("u0"), Some(&10), "{seen:?}");
    ups[1].release();
    for p in parked {
        assert_eq!(p.await.unwrap().status, 200);
    }
}

#[tokio::test]
async fn consistent_hash_keeps_a_key_on_one_target() {
    let ups = pool(3).await;
    let gw = gateway(&format!(
        r#"
upstreams:
  ch: {{ targets: [ "{}", "{}", "{}" ], balance: {{ consistent_hash: {{ header: X-User }} }} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: ch }}
"#,
        ups[0].url(),
        ups[1].url(),
        ups[2].url()
    ))
    .await;
    let mut used = HashMap::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let seen = servers_for(&gw, 4, &[("x-user", &user)]).await;
        assert_eq!(seen.len(), 1, "{user} moved between targets: {seen:?}");
        *used.entry(seen.into_keys().next().unwrap()).or_insert(0) += 1;
    }
    assert_eq!(used.len(), 3, "30 keys should reach all 3 targets: {used:?}");
    // Without the key, requests fall back to round robin.
    let seen = servers_for(&gw, 9, &[]).await;
    assert_eq!(seen.values().copied().collect::<Vec<_>>(), vec![3, 3, 3], "{seen:?}");
}

#[tokio::test]
async fn consistent_hash_on_cookie() {
    let ups = pool(2).await;
    let gw = gateway(&format!(
        r#"
upstreams:
  ch: {{ targets: [ "{}", "{}" ], balance: {{ consistent_hash: {{ cookie: session }} }} }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: ch }}
"#,
        ups[0].url(),
        ups[1].url()
    ))
    .await;
    for s in 0..10 {
        let cookie = format!("theme=dark; session=s{s}");
        let seen = servers_for(&gw, 3, &[("cookie", &cookie)]).await;
        assert_eq!(seen.len(), 1, "{seen:?}");
    }
}

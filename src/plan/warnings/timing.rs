//! `timeout-beyond-budget`: a time limit longer than the one that holds
//! it, so that it never applies (the outer one cuts first). Most likely a
//! unit or a key mistaken for another.

use super::Found;
use crate::config::LoadedConfig;

pub(super) fn timeouts_beyond_budgets(loaded: &LoadedConfig, found: &mut Found) {
    let show = |d: std::time::Duration| humantime::format_duration(d).to_string();
    let mut add = |path: String, inner: std::time::Duration, outer: std::time::Duration, what: &str, so: &str| {
        // Only a limit the file sets: a default beyond a short budget
        // (`timeouts.connect`'s 5 s under `request: 2s`) is the budget's
        // business, and not worth failing `check --strict` over.
        if inner > outer && loaded.locations.has(&path) {
            found.add(
                "timeout-beyond-budget",
                path,
                format!("{} is longer than {what} ({}): {so}", show(inner), show(outer)),
            );
        }
    };
    const NEVER: &str = "it never applies";
    for (name, u) in &loaded.config.upstreams {
        let at = format!("upstreams.{name}");
        let request = u.timeouts.request.0;
        add(format!("{at}.timeouts.connect"), u.timeouts.connect.0, request, "`timeouts.request`", NEVER);
        if let Some(t) = u.retry.per_try_timeout {
            add(format!("{at}.retry.per_try_timeout"), t.0, request, "`timeouts.request`", NEVER);
        }
        if let Some(a) = &u.health.active {
            // A target is not probed twice at once: while a slow probe waits,
            // its turns are skipped.
            let so = "a target whose probe waits that long skips its turns, and a down target (no answer) is \
                      probed once per timeout, not per interval: `unhealthy` failures take that much longer";
            add(format!("{at}.health.active.timeout"), a.timeout.0, a.interval.0, "the probes' `interval`", so);
        }
    }
    for (i, r) in loaded.config.routes.iter().enumerate() {
        let upstream = r.upstream.as_ref().and_then(|u| loaded.config.upstreams.get(u));
        if let (Some(t), Some(u)) = (r.retry.as_ref().and_then(|r| r.per_try_timeout), upstream) {
            let what = "its upstream's `timeouts.request`";
            add(format!("routes[{i}].retry.per_try_timeout"), t.0, u.timeouts.request.0, what, NEVER);
        }
        if let Some(a) = &r.aggregate {
            let budget = a.timeout.map_or(crate::plan::aggregate::DEFAULT_TIMEOUT, |t| t.0);
            for (call, c) in &a.calls {
                if let Some(t) = c.timeout {
                    add(
                        format!("routes[{i}].aggregate.calls.{call}.timeout"),
                        t.0,
                        budget,
                        "the aggregate's `timeout`",
                        NEVER,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_limit_is_held_to_the_one_around_it() {
        let text = r#"
upstreams:
  u:
    targets: [ "http://127.0.0.1:9" ]
    timeouts: { connect: 1s, request: 2s }
    retry: { per_try_timeout: 3s }
    health: { active: { interval: 1s, timeout: 5s } }
routes:
  - { name: r, match: { path: /r }, upstream: u, retry: { per_try_timeout: 1s } }
  - { name: s, match: { path: /s }, upstream: u, retry: { per_try_timeout: 9s } }
  - name: a
    match: { path: /a }
    aggregate: { timeout: 2s, calls: { one: { upstream: u, path: /x, timeout: 3s }, two: { upstream: u, path: /y, timeout: 1s } } }
"#;
        let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = super::Found::default();
        super::timeouts_beyond_budgets(&loaded, &mut found);
        let paths: Vec<&str> = found.0.iter().map(|(_, p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "upstreams.u.retry.per_try_timeout",
                "upstreams.u.health.active.timeout",
                "routes[1].retry.per_try_timeout",
                "routes[2].aggregate.calls.one.timeout"
            ]
        );
    }

    #[test]
    fn a_default_under_a_short_budget_is_not_the_files_mistake() {
        let text = "upstreams:\n  u:\n    targets: [ \"http://127.0.0.1:9\" ]\n    timeouts: { request: 2s }\n";
        let loaded = crate::config::parse_str(text, "t.yaml", std::path::Path::new(".")).unwrap();
        let mut found = super::Found::default();
        super::timeouts_beyond_budgets(&loaded, &mut found);
        assert!(found.0.is_empty(), "the default connect timeout (5 s) is not written: {:?}", found.0);
    }
}

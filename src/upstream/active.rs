//! Active health checks: every `interval`, a `GET <path>` to each target of
//! an upstream (all at once, through the upstream's own pooled client, so a
//! probe reuses a keep-alive connection), judged by its status. `healthy`
//! passes in a row bring a target back, `unhealthy` failures in a row take
//! it out. Targets start healthy. The task holds the upstream weakly and
//! ends when a reload drops it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Uri, header};
use http_body_util::BodyExt;

use super::Upstream;
use crate::http::request_body::RequestBody;

/// `health.active`, compiled.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    pub path: PathAndQuery,
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy: u32,
    pub unhealthy: u32,
    /// Inclusive status ranges that pass.
    pub expect: Vec<(u16, u16)>,
}

impl ProbeSettings {
    pub fn passes(&self, status: u16) -> bool {
        self.expect.iter().any(|&(lo, hi)| (lo..=hi).contains(&status))
    }
}

/// `"200-399"` or `"204"`.
pub fn parse_status_range(s: &str) -> Result<(u16, u16), String> {
    let status = |t: &str| -> Result<u16, String> {
        match t.trim().parse::<u16>() {
            Ok(n) if (100..=599).contains(&n) => Ok(n),
            _ => Err(format!("`{s}` is not a status or a range of them like \"200-399\"")),
        }
    };
    match s.split_once('-') {
        Some((lo, hi)) => {
            let (lo, hi) = (status(lo)?, status(hi)?);
            if lo > hi {
                return Err(format!("`{s}`: the range is empty"));
            }
            Ok((lo, hi))
        }
        None => status(s).map(|n| (n, n)),
    }
}

/// Consecutive results of one target's probes.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    passes: u32,
    failures: u32,
}

/// Starts the checks of `upstream` in the current runtime.
pub fn spawn(upstream: &Arc<Upstream>) {
    let Some(settings) = upstream.probes_config.clone() else { return };
    let weak = Arc::downgrade(upstream);
    tokio::spawn(run(weak, settings));
}

async fn run(upstream: Weak<Upstream>, settings: ProbeSettings) {
    let mut ticks = tokio::time::interval(settings.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut streaks: Vec<Streak> = Vec::new();
    loop {
        ticks.tick().await;
        let Some(up) = upstream.upgrade() else { return };
        streaks.resize(up.targets.len(), Streak::default());
        let mut probes = tokio::task::JoinSet::new();
        for (i, target) in up.targets.iter().enumerate() {
            let uri = Uri::builder()
                .scheme(target.scheme.clone())
                .authority(target.authority.clone())
                .path_and_query(settings.path.clone())
                .build();
            let Ok(uri) = uri else { continue };
            let host = HeaderValue::try_from(target.authority.as_str()).ok();
            let client = up.client.clone();
            let timeout = settings.timeout;
            probes.spawn(async move { (i, probe(client, uri, host, timeout).await) });
        }
        // The probes run without the upstream held: a reload is not delayed by them.
        drop(up);
        let mut results = Vec::with_capacity(streaks.len());
        while let Some(done) = probes.join_next().await {
            if let Ok(result) = done {
                results.push(result);
            }
        }
        let Some(up) = upstream.upgrade() else { return };
        for (i, status) in results {
            let passed = status.is_some_and(|s| settings.passes(s));
            let streak = &mut streaks[i];
            let target = &up.targets[i];
            if passed {
                streak.failures = 0;
                streak.passes = streak.passes.saturating_add(1);
                if target.health.probe_down() && streak.passes >= settings.healthy.max(1) {
                    target.health.set_probe_down(false);
                    tracing::info!(
                        upstream = &*up.name,
                        target = &*target.label,
                        "target healthy again (active probes)"
                    );
                }
            } else {
                streak.passes = 0;
                streak.failures = streak.failures.saturating_add(1);
                if !target.health.probe_down() && streak.failures >= settings.unhealthy.max(1) {
                    target.health.set_probe_down(true);
                    tracing::warn!(
                        upstream = &*up.name,
                        target = &*target.label,
                        status = status.map(i64::from).unwrap_or(-1),
                        "target unhealthy (active probes)"
                    );
                }
            }
        }
    }
}

/// One probe: the status, or `None` when no answer came in time.
async fn probe(client: super::HttpClient, uri: Uri, host: Option<HeaderValue>, timeout: Duration) -> Option<u16> {
    let mut req = Request::new(RequestBody::empty());
    *req.method_mut() = Method::GET;
    *req.uri_mut() = uri;
    if let Some(host) = host {
        req.headers_mut().insert(header::HOST, host);
    }
    req.headers_mut().insert(header::USER_AGENT, HeaderValue::from_static("portcullis-health-check"));
    let exchange = async {
        let resp = client.request(req).await.ok()?;
        let status = resp.status().as_u16();
        // Read (a little of) the body, so that the connection can be reused.
        let _ = http_body_util::Limited::new(resp.into_body(), 64 * 1024).collect().await;
        Some(status)
    };
    tokio::time::timeout(timeout, exchange).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges() {
        assert_eq!(parse_status_range("200-399"), Ok((200, 399)));
        assert_eq!(parse_status_range("204"), Ok((204, 204)));
        assert!(parse_status_range("399-200").is_err());
        assert!(parse_status_range("2xx").is_err());
        assert!(parse_status_range("700").is_err());
    }
}

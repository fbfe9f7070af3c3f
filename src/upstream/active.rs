//! Active health checks: every `interval`, a `GET <path>` to each target of
//! an upstream (spread evenly over the interval, through the upstream's own
//! pooled client, so a probe reuses a keep-alive connection), judged by its
//! status. `healthy`
//! passes in a row bring a target back, `unhealthy` failures in a row take
//! it out. Targets start healthy. The task holds the upstream weakly and
//! ends when a reload replaces it (`Upstream::retire`) or drops it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

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
#[derive(Debug, Clone, Copy)]
struct Streak {
    passes: u32,
    failures: u32,
    /// Until when its last probe may still be running (start + timeout):
    /// a target is not probed twice at once when `timeout` > `interval`.
    busy_until: Instant,
}

/// Starts the checks of `upstream` in the current runtime.
pub fn spawn(upstream: &Arc<Upstream>) {
    let Some(settings) = upstream.probes_config.clone() else { return };
    let weak = Arc::downgrade(upstream);
    tokio::spawn(run(weak, settings));
}

/// How the probes of `targets` targets are spread over one `interval`:
/// every `step`, the next `batch` targets in turn. One round still probes
/// every target once per interval, but not in one burst: 1,000 probes at
/// once held a worker for ~18 ms every interval and doubled clients' p99.
/// Nor one by one: a wake-up per probe (every 5 ms for 1,000 targets)
/// tripled the CPU per probe (BENCHMARKS.md, health checking). So the
/// timer ticks at most every `MIN_STEP`, with a batch of targets per tick.
const MIN_STEP: Duration = Duration::from_millis(50);

fn spread(interval: Duration, targets: usize) -> (Duration, usize) {
    let n = u32::try_from(targets.max(1)).unwrap_or(u32::MAX);
    let step = (interval / n).max(MIN_STEP).min(interval);
    let per_step = (step.as_nanos() * u128::from(n)).div_ceil(interval.as_nanos().max(1));
    (step, usize::try_from(per_step).unwrap_or(usize::MAX).max(1))
}

async fn run(upstream: Weak<Upstream>, settings: ProbeSettings) {
    let Some(count) = upstream.upgrade().map(|up| up.targets.len()) else { return };
    let (path, timeout) = (settings.path.clone(), settings.timeout);
    let start = |i: usize| {
        let up = upstream.upgrade().filter(|up| !up.is_retired())?;
        let target = &up.targets[i];
        let uri = Uri::builder()
            .scheme(target.scheme.clone())
            .authority(target.authority.clone())
            .path_and_query(path.clone())
            .build()
            .ok();
        let host = HeaderValue::try_from(target.authority.as_str()).ok();
        let client = up.client.clone();
        // The probe runs without the upstream held: a reload is not delayed by it.
        Some(async move {
            match uri {
                Some(uri) => probe(client, uri, host, timeout).await,
                None => None,
            }
        })
    };
    let judged = |i: usize, streak: &mut Streak, status: Option<u16>| {
        let Some(up) = upstream.upgrade() else { return false };
        judge(&up, &settings, streak, i, status);
        true
    };
    schedule(count, settings.interval, timeout, start, judged).await;
}

/// Probes `count` targets in turn, spread over each `interval` (`spread`),
/// never one target twice at once: `start(i)` begins target `i`'s probe
/// (`None`: the upstream is gone, stop), `judged` takes its result
/// (`false`: stop). A target is skipped only while its probe runs, up to
/// `timeout`: one that answered is probed again on its next turn.
async fn schedule<F>(
    count: usize,
    interval: Duration,
    timeout: Duration,
    mut start: impl FnMut(usize) -> Option<F>,
    mut judged: impl FnMut(usize, &mut Streak, Option<u16>) -> bool,
) where
    F: std::future::Future<Output = Option<u16>> + Send + 'static,
{
    if count == 0 {
        return;
    }
    let (step, batch) = spread(interval, count);
    let mut ticks = tokio::time::interval(step);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut streaks = vec![Streak { passes: 0, failures: 0, busy_until: Instant::now() }; count];
    let mut next = 0;
    let mut probes = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let now = Instant::now();
                for _ in 0..batch.min(count) {
                    let i = next;
                    next = (next + 1) % count;
                    if streaks[i].busy_until > now {
                        continue;
                    }
                    let Some(probe) = start(i) else { return };
                    streaks[i].busy_until = now + timeout;
                    probes.spawn(async move { (i, probe.await) });
                }
            }
            Some(done) = probes.join_next(), if !probes.is_empty() => {
                let Ok((i, status)) = done else { continue };
                // Done: the target's next turn probes it again (it stayed
                // busy for the whole `timeout`, and with `timeout` >=
                // `interval` every other turn was skipped).
                streaks[i].busy_until = Instant::now();
                if !judged(i, &mut streaks[i], status) {
                    return;
                }
            }
        }
    }
}

/// Counts one probe's result into the target's streak and flips its state
/// when `healthy` passes or `unhealthy` failures came in a row.
fn judge(up: &Upstream, settings: &ProbeSettings, streak: &mut Streak, i: usize, status: Option<u16>) {
    let target = &up.targets[i];
    if status.is_some_and(|s| settings.passes(s)) {
        streak.failures = 0;
        streak.passes = streak.passes.saturating_add(1);
        if target.health.probe_down() && streak.passes >= settings.healthy.max(1) {
            target.health.set_probe_down(false);
            tracing::info!(upstream = &*up.name, target = &*target.label, "target healthy again (active probes)");
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

/// One probe: the status, or `None` when no answer came in time.
async fn probe(client: super::HttpClient, uri: Uri, host: Option<HeaderValue>, timeout: Duration) -> Option<u16> {
    let request = || {
        let mut req = Request::new(RequestBody::empty());
        *req.method_mut() = Method::GET;
        *req.uri_mut() = uri.clone();
        if let Some(host) = &host {
            req.headers_mut().insert(header::HOST, host.clone());
        }
        req.headers_mut().insert(header::USER_AGENT, HeaderValue::from_static("portcullis-health-check"));
        req
    };
    let exchange = async {
        // A kept-alive connection the target closed as the probe came (its
        // idle timeout, or one request per connection) fails without an
        // answer: sent once more, on another connection, as a live GET
        // would be, so that `unhealthy: 1` does not flap on it. The pool
        // has dropped the closed one; a target that is down fails twice.
        let resp = match client.request(request()).await {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => return None,
            Err(_) => client.request(request()).await.ok()?,
        };
        let status = resp.status().as_u16();
        // What live requests would get as 502 fails the probe too (hyper
        // reads heads leniently; the gateway does not).
        if status > 599 || crate::wire::upstream_head::lenient_framing_fault(resp.headers()).is_some() {
            return None;
        }
        // Read (a little of) the body, so that the connection can be reused.
        // A body that breaks off (closed before its length, a bad chunk) is
        // a failed probe, as a proxied response's would be; one longer than
        // the little read is not.
        match http_body_util::Limited::new(resp.into_body(), 64 * 1024).collect().await {
            Err(e) if !e.is::<http_body_util::LengthLimitError>() => None,
            _ => Some(status),
        }
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

    #[test]
    fn probes_are_spread_over_the_interval() {
        let ms = Duration::from_millis;
        // One target: once per interval.
        assert_eq!(spread(ms(5000), 1), (ms(5000), 1));
        // 1,000 targets over 5s: ten every 50ms.
        assert_eq!(spread(ms(5000), 1000), (ms(50), 10));
        // 20 over 5s: one every 250ms.
        assert_eq!(spread(ms(5000), 20), (ms(250), 1));
        // An interval shorter than the step: all at once, each interval.
        assert_eq!(spread(ms(30), 7), (ms(30), 7));
        // Every target is due within one interval, whatever the rounding.
        for (interval, n) in [(ms(30), 7), (ms(10), 3), (ms(5000), 999), (ms(10), 25_000)] {
            let (step, batch) = spread(interval, n);
            let ticks = n.div_ceil(batch) as u32;
            assert!(step * ticks <= interval + step, "{interval:?} {n}: {step:?} x {ticks}");
        }
    }

    /// A probe that answered frees its target for its next turn: with
    /// `timeout` >= `interval`, a target was skipped until `timeout` had
    /// passed, however fast it answered (one probe every 2-2.5 s for an
    /// `interval` of 500 ms). A probe still running is not doubled.
    #[tokio::test(start_paused = true)]
    async fn a_target_is_probed_every_interval_once_its_probe_answered() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let ms = Duration::from_millis;
        for (answer_after, expected) in [(ms(1), 10..=11), (ms(350), 3..=4)] {
            let started = Arc::new(AtomicUsize::new(0));
            let count = started.clone();
            let begin = Instant::now();
            let start = move |_: usize| {
                count.fetch_add(1, Ordering::Relaxed);
                Some(async move {
                    tokio::time::sleep(answer_after).await;
                    Some(200)
                })
            };
            // Judged until a second of (paused, virtual) time has passed.
            let judged = |_: usize, _: &mut Streak, _: Option<u16>| begin.elapsed() < ms(1000);
            schedule(1, ms(100), ms(1000), start, judged).await;
            let n = started.load(Ordering::Relaxed);
            assert!(expected.contains(&n), "answering after {answer_after:?}: {n} probes in 1 s");
        }
    }
}

#[cfg(test)]
mod stale_connection {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A target that answers the first request of each connection and
    /// closes the connection, unanswered, when a second one comes on it.
    async fn one_request_per_connection() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let closed_on_reuse = Arc::new(AtomicUsize::new(0));
        let closed = closed_on_reuse.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                let closed = closed.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    let mut served = 0;
                    while let Ok(n) = s.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if served == 1 {
                                closed.fetch_add(1, Ordering::SeqCst);
                                return;
                            }
                            served += 1;
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                        }
                    }
                });
            }
        });
        (addr, closed_on_reuse)
    }

    /// A probe sent on a kept-alive connection the target closes is sent
    /// once more on another, as a live GET is: the target is not marked
    /// down for it (with `unhealthy: 1` it flapped).
    #[tokio::test]
    async fn a_probe_on_a_connection_closed_under_it_is_sent_again() {
        let (addr, closed_on_reuse) = one_request_per_connection().await;
        let cfg: crate::config::UpstreamConfig =
            serde_saphyr::from_str(&format!("{{ targets: [ \"http://{addr}\" ] }}")).unwrap();
        let client = crate::upstream::client::build(&cfg, crate::upstream::client::tls_config(None).unwrap(), None);
        let uri: http::Uri = format!("http://{addr}/healthz").parse().unwrap();
        let timeout = std::time::Duration::from_secs(5);
        assert_eq!(super::probe(client.clone(), uri.clone(), None, timeout).await, Some(200));
        // The first connection goes back to the pool once its answer is read.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert_eq!(super::probe(client, uri, None, timeout).await, Some(200));
        assert_eq!(closed_on_reuse.load(Ordering::SeqCst), 1, "the second probe went on the kept connection");
    }
}

//! Upstreams: named pools of targets, how one is chosen for a request, and
//! the pooled client that talks to them.

pub mod active;
pub mod balance;
pub mod breaker;
pub mod client;
pub mod h1;
pub mod h2;
pub mod health;
pub mod limits;
pub mod retry;
pub mod window;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::{Authority, Scheme};

use crate::config::resilience::AllUnhealthy;
use crate::observe::access_log::LogName;
use crate::observe::metrics::ClientSeries;
pub use balance::{Balancer, HashKey};
pub use client::HttpClient;

/// One backend address in a pool.
#[derive(Debug)]
pub struct Target {
    pub scheme: Scheme,
    pub authority: Authority,
    pub weight: u32,
    in_flight: Arc<AtomicUsize>,
    /// Inline-driven HTTP/1.1 connections (plain `http://` targets).
    pub h1: Option<Arc<h1::H1Pool>>,
    /// The HTTP/2 connection (`protocol: http2` targets).
    pub h2: Option<Arc<h2::H2Target>>,
    /// `host:port`, as logs and metrics name the target.
    pub label: Arc<str>,
    /// The label as the access log writes it.
    pub log_label: Arc<LogName>,
    /// `http_client_request_duration_seconds` for this target.
    pub metrics: Arc<ClientSeries>,
    /// Active probes' verdict and passive ejection.
    pub health: health::TargetHealth,
}

impl AsRef<health::TargetHealth> for Target {
    fn as_ref(&self) -> &health::TargetHealth {
        &self.health
    }
}

impl Target {
    pub fn new(scheme: Scheme, authority: Authority, weight: u32, metrics: Arc<ClientSeries>) -> Target {
        let label: Arc<str> = authority.as_str().into();
        Target {
            log_label: LogName::new(label.clone()),
            scheme,
            authority,
            weight,
            in_flight: Arc::default(),
            h1: None,
            h2: None,
            label,
            metrics,
            health: Default::default(),
        }
    }

    /// Counts a request as in flight until the returned guard is dropped
    /// (when the response body is finished or abandoned).
    pub fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone(), None, None)
    }

    /// The in-flight count itself, for a metrics probe.
    pub fn in_flight_counter(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A request's slot in its target's in-flight count (and in its
/// upstream's, when `limits.max_requests` counts them; and its place in
/// `max_connections` when its connection is its own: a WebSocket's).
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>, Option<limits::RequestSlot>, Option<limits::ConnPermit>);

impl InFlight {
    /// Holds the upstream-wide slot as long as the target's.
    pub fn with(mut self, slot: Option<limits::RequestSlot>) -> InFlight {
        self.1 = slot;
        self
    }

    /// Holds a place in `max_connections` as long as the request (and a
    /// tunnel it becomes) lives.
    pub fn holding(&mut self, permit: limits::ConnPermit) {
        self.2 = Some(permit);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A compiled upstream pool.
pub struct Upstream {
    /// `portcullis_upstream_connections{upstream,state}` (`active`: requests
    /// in flight; `idle`: pooled connections), reported while the plan lives.
    pub probes: Vec<Arc<dyn Fn() -> f64 + Send + Sync>>,
    pub name: Arc<str>,
    /// The name as the access log writes it.
    pub log_name: Arc<LogName>,
    pub targets: Vec<Target>,
    pub balancer: Balancer,
    pub client: HttpClient,
    /// WebSocket handshakes' client: no idle connections (`client::build_for_upgrades`).
    pub upgrades: HttpClient,
    pub request_timeout: Duration,
    /// The longest pause between two pieces of a response body (`timeouts.read`).
    pub read_timeout: Duration,
    /// Which targets may get requests, and what happens when none may.
    pub health: health::PoolHealth,
    /// The active probes, when `health.active` is set.
    pub probes_config: Option<active::ProbeSettings>,
    /// The upstream's own retry rules (routes may override fields).
    pub retry: Arc<retry::RetryPolicy>,
    /// Shared with the plan this one replaced when its rules did not
    /// change (a reload keeps the counts and the breaker's state).
    pub budget: Arc<retry::Budget>,
    pub breaker: Option<Arc<breaker::Breaker>>,
    pub limits: limits::Limits,
    pub counters: Counters,
    /// Set when a reload replaced the plan this upstream belongs to: its
    /// health probes stop then, whatever still holds it (a WebSocket
    /// tunnel, a long download), instead of probing removed targets and
    /// doubling the probes of kept ones until the last holder ends.
    retired: std::sync::atomic::AtomicBool,
}

/// The upstream's resilience counters (`portcullis_upstream_*`).
#[derive(Debug, Default)]
pub struct Counters {
    pub retries: Arc<crate::observe::metrics::Counter>,
    pub retries_denied: Arc<crate::observe::metrics::Counter>,
    pub ejections: Arc<crate::observe::metrics::Counter>,
    pub would_eject: Arc<crate::observe::metrics::Counter>,
    pub refused: [Arc<crate::observe::metrics::Counter>; limits::Refusal::ALL.len()],
}

/// The target a request goes to.
#[derive(Debug, Clone, Copy)]
pub struct Picked {
    pub index: usize,
    /// No target was healthy: chosen among all (`all_unhealthy: serve_all`).
    pub panic: bool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("name", &self.name).field("targets", &self.targets).finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(
        name: Arc<str>,
        targets: Vec<Target>,
        balancer: Balancer,
        client: HttpClient,
        request_timeout: Duration,
    ) -> Upstream {
        let origin = tokio::time::Instant::now();
        let health = health::PoolHealth::new(origin, None, false, Default::default());
        Upstream {
            probes: Vec::new(),
            log_name: LogName::new(name.clone()),
            name,
            targets,
            balancer,
            upgrades: client.clone(),
            client,
            request_timeout,
            read_timeout: Duration::from_secs(60),
            health,
            probes_config: None,
            retry: Arc::default(),
            budget: Arc::new(retry::Budget::new(0.2, 10, Duration::from_secs(10), origin)),
            breaker: None,
            limits: limits::Limits::default(),
            counters: Counters::default(),
            retired: Default::default(),
        }
    }

    /// Its plan was replaced: background work for it stops.
    pub fn retire(&self) {
        self.retired.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes over the replaced upstream's retry budget and breaker where
    /// their rules are the same: a reload in the middle of an outage keeps
    /// an open breaker open and the retries already spent counted.
    pub fn keep_state_of(&mut self, before: &Upstream) {
        // Requests the running plan still has in flight count against the
        // new one's `max_requests` and `least_request` (a reload let twice
        // the limit through, and sent new requests to a busy target).
        self.limits.keep_count_of(&before.limits);
        for target in &mut self.targets {
            if let Some(same) =
                before.targets.iter().find(|b| b.scheme == target.scheme && b.authority == target.authority)
            {
                target.in_flight = same.in_flight.clone();
            }
        }
        if self.budget.same_rules(&before.budget) {
            self.budget = before.budget.clone();
        }
        if let (Some(now), Some(then)) = (&self.breaker, &before.breaker)
            && now.settings() == then.settings()
        {
            self.breaker = Some(then.clone());
        }
    }

    /// Picks the target for one try: the balancer's choice if it may take
    /// requests, else the balancer's choice among those that may; a retry
    /// goes through the balancer too, among the targets not tried yet (as
    /// Envoy's retries avoid previous hosts): the next target in the list
    /// took every retry of its neighbour's requests. When none is healthy,
    /// `all_unhealthy` decides: any target (`serve_all`) or none (`fail`).
    pub fn pick(&self, key: Option<&[u8]>, tried: &[usize], now: tokio::time::Instant) -> Option<Picked> {
        let n = self.targets.len();
        if n == 1 && (tried.is_empty() || !self.health.checked) {
            let healthy = !self.health.checked || self.health.available(&self.targets[0].health, self.health.ms(now));
            return self.fallback(healthy, 0);
        }
        let now_ms = if self.health.checked { self.health.ms(now) } else { 0 };
        let usable = |i: usize| !self.health.checked || self.health.available(&self.targets[i].health, now_ms);
        let picked = |index| Some(Picked { index, panic: false });
        let Some(&last) = tried.last() else {
            let first = self.balancer.pick(&self.targets, key);
            if usable(first) {
                return picked(first);
            }
            // The pick's share goes to all the others in the balancer's
            // proportions (a hash key walks on along its ring, so that the
            // key stays put with one stand-in), not to the one after it in
            // the list (which took three shares of four with two of four
            // targets ejected).
            return match self.balancer.pick_where(&self.targets, key, usable) {
                Some(index) => picked(index),
                None => self.fallback(false, first),
            };
        };
        // A retry: the balancer's own turn for first tries is kept (its
        // spread is not skewed), the retry has the picks made again.
        if let Some(index) = self.balancer.pick_where(&self.targets, key, |i| usable(i) && !tried.contains(&i)) {
            return picked(index);
        }
        // Every usable target was tried: one of them again.
        let order = (0..n).map(|k| (last + 1 + k) % n);
        if let Some(index) = order.clone().find(|&i| usable(i)) {
            return picked(index);
        }
        let untried = order.clone().find(|i| !tried.contains(i)).unwrap_or(last);
        self.fallback(false, untried)
    }

    /// Whether another try would find a target (`pick` would not refuse
    /// it), now that the last try's result is recorded.
    pub fn has_target_for_retry(&self, now: tokio::time::Instant) -> bool {
        if !self.health.checked || self.health.all_unhealthy != AllUnhealthy::Fail {
            return true;
        }
        let now_ms = self.health.ms(now);
        self.targets.iter().any(|t| self.health.available(&t.health, now_ms))
    }

    fn fallback(&self, healthy: bool, index: usize) -> Option<Picked> {
        match (healthy, self.health.all_unhealthy) {
            (true, _) => Some(Picked { index, panic: false }),
            (false, AllUnhealthy::ServeAll) => Some(Picked { index, panic: true }),
            (false, AllUnhealthy::Fail) => None,
        }
    }

    /// Notes a try's result for passive health and the breaker (`probe`:
    /// the breaker's half-open probe).
    pub fn record(&self, target: usize, ok: bool, probe: Option<breaker::ProbeToken>, now: tokio::time::Instant) {
        if let Some(b) = &self.breaker
            && let Some(state) = b.record(ok, probe, now)
        {
            tracing::warn!(upstream = &*self.name, state, "circuit breaker changed state");
        }
        if self.health.passive.is_some() {
            let jitter = rand::random::<f64>();
            match self.health.record(&self.targets, target, ok, now, jitter) {
                Some(health::Ejection::Ejected(length)) => {
                    self.counters.ejections.inc();
                    tracing::warn!(
                        upstream = &*self.name,
                        target = &*self.targets[target].label,
                        seconds = length.as_secs_f64(),
                        "target ejected after failing in a row"
                    );
                }
                Some(health::Ejection::WouldEject(length)) => {
                    self.counters.would_eject.inc();
                    tracing::info!(
                        upstream = &*self.name,
                        target = &*self.targets[target].label,
                        seconds = length.as_secs_f64(),
                        "target would be ejected (passive health observes only)"
                    );
                }
                Some(health::Ejection::CapReached) => tracing::warn!(
                    upstream = &*self.name,
                    target = &*self.targets[target].label,
                    "target failing, but max_ejected of the pool is ejected already"
                ),
                None => {}
            }
        }
    }
}

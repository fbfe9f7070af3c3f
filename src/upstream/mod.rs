//! Upstreams: named pools of targets, how one is chosen for a request, and
//! the pooled client that talks to them.

pub mod balance;
pub mod client;
pub mod h1;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::{Authority, Scheme};

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
    /// `host:port`, as logs and metrics name the target.
    pub label: Arc<str>,
    /// `http_client_request_duration_seconds` for this target.
    pub metrics: Arc<ClientSeries>,
}

impl Target {
    pub fn new(scheme: Scheme, authority: Authority, weight: u32, metrics: Arc<ClientSeries>) -> Target {
        let label = authority.as_str().into();
        Target { scheme, authority, weight, in_flight: Arc::default(), h1: None, label, metrics }
    }

    /// Counts a request as in flight until the returned guard is dropped
    /// (when the response body is finished or abandoned).
    pub fn begin(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// The in-flight count itself, for a metrics probe.
    pub fn in_flight_counter(&self) -> Arc<AtomicUsize> {
        self.in_flight.clone()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A request's slot in its target's in-flight count.
#[derive(Debug)]
pub struct InFlight(Arc<AtomicUsize>);

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
    pub targets: Vec<Target>,
    pub balancer: Balancer,
    pub client: HttpClient,
    pub request_timeout: Duration,
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
        Upstream { probes: Vec::new(), name, targets, balancer, client, request_timeout }
    }

    /// Picks the target for one request.
    pub fn pick(&self, key: Option<&[u8]>) -> &Target {
        if self.targets.len() == 1 {
            return &self.targets[0];
        }
        &self.targets[self.balancer.pick(&self.targets, key)]
    }
}

//! `upstreams.<name>.limits`: requests in flight, open connections and
//! requests waiting for one. Above a limit the request is refused at once
//! (503), not queued behind it: a queue in front of an overloaded service
//! only adds latency to the failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub use crate::http::error::UpstreamRefusal as Refusal;

/// The limits of one upstream.
#[derive(Debug, Default)]
pub struct Limits {
    pub max_requests: Option<usize>,
    in_flight: Arc<AtomicUsize>,
    /// `max_connections` and `max_pending`, shared by the targets' pools.
    pub connections: Option<Arc<ConnLimit>>,
}

/// A request's place in `max_requests`, released when dropped.
#[derive(Debug)]
pub struct RequestSlot(Arc<AtomicUsize>);

impl Drop for RequestSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Limits {
    pub fn new(max_requests: Option<usize>, connections: Option<Arc<ConnLimit>>) -> Limits {
        Limits { max_requests, in_flight: Arc::default(), connections }
    }

    /// Counts the requests `before` has in flight (a reload: they are
    /// still running, on the old plan).
    pub fn keep_count_of(&mut self, before: &Limits) {
        self.in_flight = before.in_flight.clone();
    }

    /// A slot among `max_requests`, `Ok(None)` when there is no such limit.
    pub fn admit(&self) -> Result<Option<RequestSlot>, Refusal> {
        let Some(max) = self.max_requests else { return Ok(None) };
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let slot = RequestSlot(self.in_flight.clone());
        if before >= max { Err(Refusal::MaxRequests) } else { Ok(Some(slot)) }
    }

    /// `admit` for a retry whose failed try still holds a place it is
    /// about to give back (an upstream's answer, dropped once this returns).
    pub fn admit_again(&self) -> Result<Option<RequestSlot>, Refusal> {
        let Some(max) = self.max_requests else { return Ok(None) };
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let slot = RequestSlot(self.in_flight.clone());
        // `before` counts the place the failed try gives back.
        if before > max { Err(Refusal::MaxRequests) } else { Ok(Some(slot)) }
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Open connections of an upstream's HTTP/1.1 pools, and the requests
/// waiting for one.
#[derive(Debug)]
pub struct ConnLimit {
    permits: Arc<Semaphore>,
    pub max_connections: usize,
    max_pending: usize,
    pending: AtomicUsize,
    /// Signalled when a connection closes (its permit is free).
    freed: Arc<Notify>,
}

/// An open connection's place in `max_connections`.
#[derive(Debug)]
pub struct ConnPermit {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        // The permit first, then the wake-up: a waiter woken on another
        // thread must find it free.
        self.permit.take();
        self.freed.notify_one();
    }
}

/// A request waiting for a connection, counted until dropped.
#[derive(Debug)]
pub struct Waiting<'a>(&'a ConnLimit);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnLimit {
    pub fn new(max_connections: usize, max_pending: usize) -> ConnLimit {
        ConnLimit {
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            max_pending,
            pending: AtomicUsize::new(0),
            freed: Arc::new(Notify::new()),
        }
    }

    /// A permit for a new connection, if one is free.
    pub fn try_open(&self) -> Option<ConnPermit> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(ConnPermit { permit: Some(permit), freed: self.freed.clone() })
    }

    /// Joins the requests waiting for a connection, unless `max_pending` already do.
    pub fn wait(&self) -> Result<Waiting<'_>, Refusal> {
        let before = self.pending.fetch_add(1, Ordering::Relaxed);
        let waiting = Waiting(self);
        if before >= self.max_pending { Err(Refusal::MaxPending) } else { Ok(waiting) }
    }

    /// Whether requests wait (a pool then closes a connection it would
    /// keep idle, so that its permit serves them).
    pub fn has_waiters(&self) -> bool {
        self.pending.load(Ordering::Relaxed) != 0
    }

    /// Resolves when a connection has closed.
    pub async fn freed(&self) {
        self.freed.notified().await;
    }

    pub fn open(&self) -> usize {
        self.max_connections - self.permits.available_permits()
    }

    /// Requests waiting for a connection now (a refused one counts for
    /// the instant it takes to refuse it).
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_requests_refuses_exactly_above_the_limit() {
        let limits = Limits::new(Some(2), None);
        let a = limits.admit().unwrap();
        let _b = limits.admit().unwrap();
        assert_eq!(limits.admit().unwrap_err(), Refusal::MaxRequests);
        assert_eq!(limits.in_flight(), 2, "a refused request leaves no slot behind");
        drop(a);
        assert!(limits.admit().is_ok());
        assert!(Limits::default().admit().unwrap().is_none());
    }

    /// A retry whose failed try holds a place it is giving back takes that
    /// place, whoever else is in flight: it cannot lose it to a race.
    #[test]
    fn a_retry_takes_the_place_its_try_gives_back() {
        let limits = Limits::new(Some(2), None);
        let _other = limits.admit().unwrap();
        let failed_try = limits.admit().unwrap();
        assert_eq!(limits.admit().unwrap_err(), Refusal::MaxRequests);
        let retry = limits.admit_again().expect("the failed try's place");
        drop(failed_try);
        assert_eq!(limits.in_flight(), 2, "the limit holds once the try has given its place back");
        drop(retry);
    }

    #[test]
    fn connections_and_waiters_are_capped() {
        let conns = ConnLimit::new(1, 1);
        let first = conns.try_open().expect("one connection");
        assert!(conns.try_open().is_none());
        assert_eq!(conns.open(), 1);
        let waiting = conns.wait().expect("one may wait");
        assert!(conns.has_waiters());
        assert_eq!(conns.wait().unwrap_err(), Refusal::MaxPending);
        drop(waiting);
        drop(first);
        assert!(!conns.has_waiters());
        assert!(conns.try_open().is_some());
    }
}

//! When a failed try is tried again: the conditions, the methods, the
//! per-try time, the back-off between tries, and the budget that keeps
//! retries from multiplying an outage.

use std::time::Duration;

use http::Method;
use tokio::time::Instant;

use super::window::Window;

/// Why a try failed, as retry conditions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryFailure {
    /// The request never reached the upstream.
    ConnectFailure,
    /// The connection closed or reset after (part of) the request was sent.
    Reset,
    /// The try ran out of time.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
}

/// A route's retry rules (its upstream's, with the route's fields over them).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub connect_failure: bool,
    pub reset: bool,
    pub timeout: bool,
    pub any_5xx: bool,
    pub statuses: Vec<u16>,
    /// Methods retried when the upstream may have acted on the request.
    pub methods: Vec<Method>,
    pub per_try_timeout: Option<Duration>,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Largest body kept for sending again.
    pub buffer: u64,
    /// Retry only on a target not tried yet (the default policy: a
    /// connect failure goes to the next target, not the same one again).
    pub only_elsewhere: bool,
}

impl Default for RetryPolicy {
    /// One more try, on another target, when a connection could not be
    /// made: the upstream never saw the request, so any method is safe
    /// (NGINX's `proxy_next_upstream error` does the same).
    fn default() -> Self {
        RetryPolicy {
            attempts: 2,
            connect_failure: true,
            reset: false,
            timeout: false,
            any_5xx: false,
            statuses: Vec::new(),
            methods: idempotent_methods(),
            per_try_timeout: None,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(250),
            buffer: 64 * 1024,
            only_elsewhere: true,
        }
    }
}

/// RFC 9110 §9.2.2.
pub fn idempotent_methods() -> Vec<Method> {
    vec![Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE, Method::PUT, Method::DELETE]
}

impl RetryPolicy {
    /// Whether `failure` allows another try of a `method` request. A
    /// connect failure never reached the upstream: any method may go again.
    pub fn allows(&self, failure: TryFailure, method: &Method) -> bool {
        let listed = match failure {
            TryFailure::ConnectFailure => return self.connect_failure,
            TryFailure::Reset => self.reset,
            TryFailure::Timeout => self.timeout,
            TryFailure::Status(s) => (self.any_5xx && (500..600).contains(&s)) || self.statuses.contains(&s),
        };
        listed && self.methods.contains(method)
    }

    /// Whether a try may be retried after the request (and its body) went
    /// out: on a reset, a timeout or a status.
    pub fn retries_after_sending(&self) -> bool {
        self.attempts > 1 && (self.reset || self.timeout || self.any_5xx || !self.statuses.is_empty())
    }

    /// Whether a response with `status` could be retried at all (so the
    /// engine knows to look before passing it on).
    pub fn watches_status(&self, status: u16) -> bool {
        (self.any_5xx && (500..600).contains(&status)) || self.statuses.contains(&status)
    }

    /// The wait before retry number `retry` (1 for the first): full jitter
    /// over an exponential ceiling (`base`, `2 base`, … up to `max`).
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.backoff_base.saturating_mul(1u32 << retry.saturating_sub(1).min(16)).min(self.backoff_max);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// Retries at most `ratio` of the requests of the last `window`, plus
/// `min_per_second` a second, per upstream (linkerd's and Finagle's budget,
/// with a window where Envoy's has none).
#[derive(Debug)]
pub struct Budget {
    ratio: f64,
    reserve: f64,
    window: Duration,
    /// (requests, retries)
    counts: Window,
}

impl Budget {
    pub fn new(ratio: f64, min_per_second: u32, window: Duration, origin: Instant) -> Budget {
        let reserve = f64::from(min_per_second) * window.as_secs_f64();
        Budget { ratio, reserve, window, counts: Window::new(window, origin) }
    }

    /// Whether `other` counts by the same rules (a reload may then keep this one's counts).
    pub fn same_rules(&self, other: &Budget) -> bool {
        self.ratio == other.ratio && self.reserve == other.reserve && self.window == other.window
    }

    /// Counts a request (its first try).
    pub fn request(&self, now: Instant) {
        self.counts.add(now, 1, 0);
    }

    /// Takes one retry from the budget, if any is left.
    pub fn try_retry(&self, now: Instant) -> bool {
        let (requests, retries) = self.counts.sums(now);
        let allowed = self.ratio * requests as f64 + self.reserve;
        if (retries as f64) < allowed {
            self.counts.add(now, 0, 1);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_and_methods() {
        let p = RetryPolicy { reset: true, statuses: vec![503], ..RetryPolicy::default() };
        assert!(p.allows(TryFailure::ConnectFailure, &Method::POST), "never reached the upstream");
        assert!(p.allows(TryFailure::Reset, &Method::GET));
        assert!(!p.allows(TryFailure::Reset, &Method::POST), "the upstream may have acted on it");
        assert!(p.allows(TryFailure::Status(503), &Method::PUT));
        assert!(!p.allows(TryFailure::Status(502), &Method::GET), "not listed");
        assert!(!p.allows(TryFailure::Timeout, &Method::GET), "not listed");
        let widened = RetryPolicy { methods: vec![Method::POST], ..p };
        assert!(widened.allows(TryFailure::Status(503), &Method::POST));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1, 1.0), Duration::from_millis(25));
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(50));
        assert_eq!(p.backoff(4, 1.0), Duration::from_millis(200));
        assert_eq!(p.backoff(5, 1.0), Duration::from_millis(250));
        assert_eq!(p.backoff(40, 1.0), Duration::from_millis(250));
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(50));
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
    }

    #[test]
    fn the_budget_caps_retries_per_window() {
        let t0 = Instant::now();
        // 20% of requests, 1 a second on top, over 10 s: 10 in reserve.
        let b = Budget::new(0.2, 1, Duration::from_secs(10), t0);
        for _ in 0..100 {
            b.request(t0);
        }
        let granted = (0..100).filter(|_| b.try_retry(t0)).count();
        assert_eq!(granted, 20 + 10);
        // Once the window has passed, the reserve is back, the old requests gone.
        let later = t0 + Duration::from_secs(11);
        let granted = (0..100).filter(|_| b.try_retry(later)).count();
        assert_eq!(granted, 10);
    }
}

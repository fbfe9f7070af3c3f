//! The circuit breaker of one upstream: opens on failures in a row or on
//! the failed share of the last `window` (once `min_requests` were seen),
//! answers at once while open, lets one probe request through after
//! `open_for` (half-open), and closes when the probe succeeds.
//!
//! Lock-free: the state and the time it was entered in two atomics; the
//! caller passes the time, so tests drive the clock.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::window::Window;

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    /// 0: this condition is off.
    pub consecutive_failures: u32,
    pub error_ratio: Option<f64>,
    pub window: Duration,
    pub min_requests: u32,
    pub open_for: Duration,
}

#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    origin: Instant,
    state: AtomicU8,
    /// When the state was entered (ms since `origin`).
    since: AtomicU64,
    failures_in_a_row: AtomicU32,
    /// (requests, failures) over the window.
    counts: Window,
}

/// Which probe a request is: the time it went (ms since the breaker's
/// origin). A probe whose answer is late (another went after `open_for`)
/// is no longer the breaker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeToken(u64);

/// What the breaker says about a request about to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go on.
    Pass,
    /// The one request that tests a half-open breaker, with its token
    /// (for `record`: only the current probe's answer decides).
    Probe(ProbeToken),
    /// Open (or half-open with its probe under way): refuse. `retry_after`:
    /// how long until a probe may go (the 503's `Retry-After`).
    Refuse { retry_after: Duration },
}

impl Breaker {
    pub fn new(settings: BreakerSettings, origin: Instant) -> Breaker {
        let counts = Window::new(settings.window, origin);
        Breaker {
            settings,
            origin,
            state: AtomicU8::new(CLOSED),
            since: AtomicU64::new(0),
            failures_in_a_row: AtomicU32::new(0),
            counts,
        }
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    pub fn admit(&self, now: Instant) -> Admission {
        match self.state.load(Ordering::Acquire) {
            CLOSED => Admission::Pass,
            _ => {
                let since = self.since.load(Ordering::Acquire);
                let (now_ms, due_ms) = (self.ms(now), since + self.settings.open_for.as_millis() as u64);
                // Half-open for longer than `open_for`: the probe's answer was
                // lost (its request abandoned), so another may go.
                // The probe is taken by moving `since` (not the state: from
                // half-open to half-open, every request at the same instant
                // won the exchange, and each went as the probe).
                if now_ms >= due_ms
                    && self.since.compare_exchange(since, now_ms, Ordering::AcqRel, Ordering::Acquire).is_ok()
                {
                    self.state.store(HALF_OPEN, Ordering::Release);
                    Admission::Probe(ProbeToken(now_ms))
                } else {
                    // Another request took the probe just now: its answer
                    // may take up to `open_for`.
                    let left = due_ms.checked_sub(now_ms).filter(|&ms| ms > 0);
                    let retry_after = left.map_or(self.settings.open_for, Duration::from_millis);
                    Admission::Refuse { retry_after }
                }
            }
        }
    }

    /// Notes a result. `probe`: it was a half-open breaker's probe; only
    /// the current one decides (a late answer to a probe that another
    /// replaced, after `open_for`, closed a breaker the newer probe had
    /// opened again, or opened one it had closed). Returns the new state
    /// name when this result changed it.
    pub fn record(&self, ok: bool, probe: Option<ProbeToken>, now: Instant) -> Option<&'static str> {
        if let Some(ProbeToken(went)) = probe {
            if self.state.load(Ordering::Acquire) != HALF_OPEN || self.since.load(Ordering::Acquire) != went {
                return None;
            }
            return Some(if ok {
                self.failures_in_a_row.store(0, Ordering::Relaxed);
                self.counts.clear();
                self.enter(CLOSED, now);
                "closed"
            } else {
                self.enter(OPEN, now);
                "open"
            });
        }
        if self.state.load(Ordering::Acquire) != CLOSED {
            // Answers to requests sent before the breaker opened.
            return None;
        }
        self.counts.add(now, 1, u64::from(!ok));
        if ok {
            if self.failures_in_a_row.load(Ordering::Relaxed) != 0 {
                self.failures_in_a_row.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let in_a_row = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        let by_count = self.settings.consecutive_failures != 0 && in_a_row >= self.settings.consecutive_failures;
        let by_ratio = self.settings.error_ratio.is_some_and(|ratio| {
            let (requests, failures) = self.counts.sums(now);
            requests >= u64::from(self.settings.min_requests.max(1)) && failures as f64 >= ratio * requests as f64
        });
        if (by_count || by_ratio)
            && self.state.compare_exchange(CLOSED, OPEN, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            self.since.store(self.ms(now), Ordering::Release);
            return Some("open");
        }
        None
    }

    fn enter(&self, state: u8, now: Instant) {
        self.since.store(self.ms(now), Ordering::Release);
        self.state.store(state, Ordering::Release);
    }

    /// The state as of `now`: an open breaker whose `open_for` has passed
    /// is half-open (its probe goes with the next request), though it
    /// moves there only when that request comes: a dashboard or `/status`
    /// read between the two would show `open` long after it was over.
    fn state_at(&self, now: Instant) -> u8 {
        match self.state.load(Ordering::Acquire) {
            OPEN if self.ms(now) >= self.since.load(Ordering::Acquire) + self.settings.open_for.as_millis() as u64 => {
                HALF_OPEN
            }
            state => state,
        }
    }

    /// Whether requests pass freely (not open, not half-open): a retry goes
    /// only then, as Resilience4j and Polly check before each retry.
    pub fn is_closed(&self) -> bool {
        self.state.load(Ordering::Acquire) == CLOSED
    }

    /// 0 closed, 1 open, 0.5 half-open (for a gauge), as of `now`.
    pub fn gauge(&self, now: Instant) -> f64 {
        match self.state_at(now) {
            CLOSED => 0.0,
            OPEN => 1.0,
            _ => 0.5,
        }
    }

    /// `closed`, `open` or `half_open`, as of `now`.
    pub fn state_name(&self, now: Instant) -> &'static str {
        match self.state_at(now) {
            CLOSED => "closed",
            OPEN => "open",
            _ => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuse(ms: u64) -> Admission {
        Admission::Refuse { retry_after: Duration::from_millis(ms) }
    }

    fn settings() -> BreakerSettings {
        BreakerSettings {
            consecutive_failures: 3,
            error_ratio: Some(0.5),
            window: Duration::from_secs(10),
            min_requests: 10,
            open_for: Duration::from_secs(5),
        }
    }

    #[test]
    fn opens_on_failures_in_a_row_then_probes_then_closes() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        assert_eq!(b.record(false, None, t0), None);
        assert_eq!(b.record(false, None, t0), None);
        assert_eq!(b.record(false, None, t0), Some("open"));
        assert_eq!(b.admit(t0), refuse(5000));
        assert_eq!(b.admit(t0 + Duration::from_millis(4999)), refuse(1));
        let t1 = t0 + Duration::from_secs(5);
        // Read before any request comes: half-open already (a probe would go).
        assert_eq!((b.state_name(t0), b.gauge(t0)), ("open", 1.0));
        assert_eq!((b.state_name(t1), b.gauge(t1)), ("half_open", 0.5));
        let Admission::Probe(first) = b.admit(t1) else { panic!("a probe") };
        assert_eq!(b.admit(t1), refuse(5000), "one probe at a time, whose answer may take `open_for`");
        assert_eq!(b.record(false, Some(first), t1), Some("open"), "a failed probe opens it again");
        assert_eq!(b.admit(t1 + Duration::from_secs(4)), refuse(1000));
        let t2 = t1 + Duration::from_secs(5);
        let Admission::Probe(second) = b.admit(t2) else { panic!("a probe") };
        assert_eq!(b.record(true, Some(first), t2), None, "an answer to an earlier probe");
        assert_eq!(b.record(true, Some(second), t2), Some("closed"));
        assert_eq!(b.record(false, Some(second), t2), None, "once decided");
        assert_eq!(b.admit(t2), Admission::Pass);
        assert_eq!(b.state_name(t2 + Duration::from_secs(60)), "closed");
    }

    #[test]
    fn opens_on_the_error_ratio_once_enough_requests_were_seen() {
        let t0 = Instant::now();
        let b = Breaker::new(settings(), t0);
        // Alternating: never 3 in a row, but half of them fail.
        for i in 0..9 {
            assert_eq!(b.record(i % 2 == 0, None, t0), None, "fewer than min_requests");
        }
        assert_eq!(b.record(false, None, t0), Some("open"), "5 of 10 failed");
        // A lost probe does not keep it half-open forever.
        let t1 = t0 + Duration::from_secs(5);
        let Admission::Probe(lost) = b.admit(t1) else { panic!("a probe") };
        let Admission::Probe(next) = b.admit(t1 + Duration::from_secs(5)) else { panic!("another probe") };
        assert_eq!(b.admit(t1 + Duration::from_secs(5)), refuse(5000), "one probe at a time, half-open again too");
        // The lost one's answer comes after all, late: the newer probe decides.
        assert_eq!(b.record(true, Some(lost), t1 + Duration::from_secs(6)), None);
        assert_eq!(b.state_name(t1 + Duration::from_secs(6)), "half_open");
        assert_eq!(b.record(false, Some(next), t1 + Duration::from_secs(7)), Some("open"));
        assert_eq!(b.record(true, Some(lost), t1 + Duration::from_secs(8)), None, "a late success closes nothing");
        assert_eq!(b.state_name(t1 + Duration::from_secs(8)), "open");
    }

    #[test]
    fn old_failures_leave_the_window() {
        let t0 = Instant::now();
        let b = Breaker::new(BreakerSettings { consecutive_failures: 0, ..settings() }, t0);
        for _ in 0..4 {
            b.record(true, None, t0);
        }
        for _ in 0..6 {
            b.record(false, None, t0);
        }
        assert_eq!(b.admit(t0), refuse(5000), "6 of 10 failed");
        let b = Breaker::new(BreakerSettings { consecutive_failures: 0, ..settings() }, t0);
        for _ in 0..6 {
            b.record(false, None, t0);
        }
        let later = t0 + Duration::from_secs(11);
        for _ in 0..9 {
            assert_eq!(b.record(true, None, later), None);
        }
        assert_eq!(b.record(false, None, later), None, "1 of 10 in the window");
    }
}

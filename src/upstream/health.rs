//! Which targets of a pool may get new requests: the active probes' verdict
//! (`active.rs` sets it) and passive ejection from live traffic, in Envoy's
//! manner (outlier detection: failures in a row eject a target for
//! `base_ejection` times the number of its ejections, capped, with jitter,
//! never more than `max_ejected` of the pool at once).
//!
//! Everything here is atomics read on the request path; the rare writes
//! (an ejection) scan the pool. Times are milliseconds since the pool's
//! `origin`, taken from a `tokio::time::Instant` the caller passes in, so
//! tests drive the clock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::resilience::AllUnhealthy;

/// One target's health.
#[derive(Debug, Default)]
pub struct TargetHealth {
    /// The active probes found it unhealthy.
    probe_down: AtomicBool,
    /// Failures in a row from live traffic.
    failures: AtomicU32,
    /// Ejected until this time (ms since the origin); 0: not ejected.
    ejected_until: AtomicU64,
    /// Ejections so far (the multiplier of the next one).
    ejections: AtomicU32,
}

impl AsRef<TargetHealth> for TargetHealth {
    fn as_ref(&self) -> &TargetHealth {
        self
    }
}

impl TargetHealth {
    pub fn set_probe_down(&self, down: bool) {
        self.probe_down.store(down, Ordering::Relaxed);
    }

    pub fn probe_down(&self) -> bool {
        self.probe_down.load(Ordering::Relaxed)
    }

    fn ejected_at(&self, now_ms: u64) -> bool {
        self.ejected_until.load(Ordering::Relaxed) > now_ms
    }
}

/// The state a target is in, as `/status` and metrics tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Healthy,
    /// Failed its active probes.
    Unhealthy,
    /// Ejected by passive checks.
    Ejected,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Healthy => "healthy",
            State::Unhealthy => "unhealthy",
            State::Ejected => "ejected",
        }
    }
}

/// Passive ejection settings, compiled.
#[derive(Debug, Clone)]
pub struct Passive {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    /// Share of the pool that may be ejected at once.
    pub max_ejected: f64,
    pub enforce: bool,
}

/// What passive checking decided after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ejection {
    /// Ejected for this long.
    Ejected(Duration),
    /// Would have been ejected for this long (`enforce: false`).
    WouldEject(Duration),
    /// Due for ejection, but `max_ejected` of the pool already is.
    CapReached,
}

/// The health side of a pool.
#[derive(Debug)]
pub struct PoolHealth {
    origin: Instant,
    pub passive: Option<Passive>,
    pub all_unhealthy: AllUnhealthy,
    /// Whether anything can make a target unavailable (active or passive
    /// checks): without, picking skips every health read.
    pub checked: bool,
    /// Whether active probes run (and so can bring a target back).
    active: bool,
    /// When a request was last sent with no target healthy (ms), for a
    /// warning at most once a second.
    panic_logged: AtomicU64,
}

impl PoolHealth {
    pub fn new(origin: Instant, passive: Option<Passive>, active: bool, all_unhealthy: AllUnhealthy) -> PoolHealth {
        let checked = active || passive.as_ref().is_some_and(|p| p.enforce);
        PoolHealth { origin, passive, all_unhealthy, checked, active, panic_logged: AtomicU64::new(0) }
    }

    /// Takes over what `previous` (the same target in the pool of the config
    /// this one replaces) knew: its probes' verdict, its ejection and how
    /// many ejections it had. A reload does not bring a sick target back.
    /// Only what this pool's own checks can undo: a verdict of probes this
    /// config no longer runs (or an ejection without passive checks) would
    /// keep the target out, or reported out, until a restart.
    pub fn carry_over(&self, target: &TargetHealth, before: &PoolHealth, previous: &TargetHealth) {
        if self.active {
            target.set_probe_down(previous.probe_down());
        }
        if !self.passive.as_ref().is_some_and(|p| p.enforce) {
            return;
        }
        target.failures.store(previous.failures.load(Ordering::Relaxed), Ordering::Relaxed);
        target.ejections.store(previous.ejections.load(Ordering::Relaxed), Ordering::Relaxed);
        let until = previous.ejected_until.load(Ordering::Relaxed);
        if until != 0 {
            // Milliseconds from the other pool's origin, moved to this one's.
            let at = before.origin + std::time::Duration::from_millis(until);
            match at.checked_duration_since(self.origin) {
                Some(after) => target.ejected_until.store((after.as_millis() as u64).max(1), Ordering::Relaxed),
                None => {
                    // Ended before this pool began. Longer ago than the
                    // longest ejection: its count is spent, as it would be
                    // without the reload (else every reload kept it, and a
                    // target ejected once climbed to `max_ejection` on its
                    // next blips). Sooner: it ends at this pool's start,
                    // and the count restarts up to that much later.
                    let longest = self.passive.as_ref().map_or(Duration::ZERO, |p| p.max_ejection);
                    if self.origin.saturating_duration_since(at) > longest {
                        target.ejections.store(0, Ordering::Relaxed);
                    } else {
                        target.ejected_until.store(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Notes a request sent while no target is healthy (`serve_all`): a
    /// warning, at most one a second.
    pub fn note_panic(&self, upstream: &str, now: Instant) {
        let now_ms = self.ms(now) + 1;
        let last = self.panic_logged.load(Ordering::Relaxed);
        if (last == 0 || now_ms >= last + 1000)
            && self.panic_logged.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(upstream, "no target is healthy: sending to all of them (all_unhealthy: serve_all)");
        }
    }

    pub fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.origin).as_millis() as u64
    }

    /// Whether `t` may get new requests at `now`.
    pub fn available(&self, t: &TargetHealth, now_ms: u64) -> bool {
        !t.probe_down() && !t.ejected_at(now_ms)
    }

    pub fn state(&self, t: &TargetHealth, now: Instant) -> State {
        if t.ejected_at(self.ms(now)) {
            State::Ejected
        } else if t.probe_down() {
            State::Unhealthy
        } else {
            State::Healthy
        }
    }

    /// Notes a live request's result on target `i` of `pool`; `jitter` is
    /// a number in [0, 1) (random in production). Returns what a failure
    /// decided, if it decided something.
    pub fn record(
        &self,
        pool: &[impl AsRef<TargetHealth>],
        i: usize,
        ok: bool,
        now: Instant,
        jitter: f64,
    ) -> Option<Ejection> {
        let passive = self.passive.as_ref()?;
        let t = pool[i].as_ref();
        if ok {
            if t.failures.load(Ordering::Relaxed) != 0 {
                t.failures.store(0, Ordering::Relaxed);
            }
            return None;
        }
        let failures = t.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < passive.consecutive_failures.max(1) {
            return None;
        }
        let now_ms = self.ms(now);
        if t.ejected_at(now_ms) {
            return None;
        }
        t.failures.store(0, Ordering::Relaxed);
        let ejected = pool.iter().filter(|o| o.as_ref().ejected_at(now_ms)).count();
        let cap = ((pool.len() as f64 * passive.max_ejected).floor() as usize).max(1);
        if ejected >= cap {
            return Some(Ejection::CapReached);
        }
        // The multiplier restarts once a target has stayed back for the longest ejection.
        let last_end = t.ejected_until.load(Ordering::Relaxed);
        let max_ms = passive.max_ejection.as_millis() as u64;
        if last_end != 0 && now_ms.saturating_sub(last_end) > max_ms {
            t.ejections.store(0, Ordering::Relaxed);
        }
        let n = t.ejections.load(Ordering::Relaxed) + 1;
        let length = passive.base_ejection.saturating_mul(n).min(passive.max_ejection);
        // Up to a tenth of the base on top, so that targets ejected together do not return together.
        let length = (length + passive.base_ejection.mul_f64(jitter.clamp(0.0, 1.0) / 10.0)).min(passive.max_ejection);
        if !passive.enforce {
            return Some(Ejection::WouldEject(length));
        }
        t.ejections.store(n, Ordering::Relaxed);
        t.ejected_until.store(now_ms + (length.as_millis() as u64).max(1), Ordering::Relaxed);
        Some(Ejection::Ejected(length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passive(enforce: bool) -> Passive {
        Passive {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(100),
            max_ejected: 0.5,
            enforce,
        }
    }

    #[test]
    fn failures_in_a_row_eject_for_growing_capped_times() {
        let t0 = Instant::now();
        let h = PoolHealth::new(t0, Some(passive(true)), false, AllUnhealthy::ServeAll);
        let targets: Vec<TargetHealth> = (0..4).map(|_| TargetHealth::default()).collect();
        let pool = &targets;
        let fail = |now| h.record(pool, 0, false, now, 0.0);
        assert_eq!(fail(t0), None);
        assert_eq!(h.record(pool, 0, true, t0, 0.0), None, "a success breaks the run");
        assert_eq!(fail(t0), None);
        assert_eq!(fail(t0), None);
        assert_eq!(fail(t0), Some(Ejection::Ejected(Duration::from_secs(30))));
        assert_eq!(h.state(&pool[0], t0 + Duration::from_secs(29)), State::Ejected);
        assert!(!h.available(&pool[0], h.ms(t0 + Duration::from_secs(29))));
        let back = t0 + Duration::from_secs(30);
        assert!(h.available(&pool[0], h.ms(back)));
        for _ in 0..2 {
            fail(back);
        }
        assert_eq!(fail(back), Some(Ejection::Ejected(Duration::from_secs(60))), "second ejection: twice");
        let back = back + Duration::from_secs(60);
        for _ in 0..2 {
            fail(back);
        }
        assert_eq!(fail(back), Some(Ejection::Ejected(Duration::from_secs(90))));
        let back = back + Duration::from_secs(90);
        for _ in 0..2 {
            fail(back);
        }
        assert_eq!(fail(back), Some(Ejection::Ejected(Duration::from_secs(100))), "capped");
        // Jitter adds at most a tenth of the base, within the cap.
        let back = back + Duration::from_secs(100);
        let long_after = back + Duration::from_secs(101);
        for _ in 0..2 {
            fail(long_after);
        }
        assert_eq!(
            h.record(pool, 0, false, long_after, 0.5),
            Some(Ejection::Ejected(Duration::from_millis(31_500))),
            "back for longer than the longest ejection: the multiplier restarts"
        );
    }

    #[test]
    fn never_more_than_max_ejected_and_observe_only_ejects_nothing() {
        let t0 = Instant::now();
        let h = PoolHealth::new(t0, Some(passive(true)), false, AllUnhealthy::ServeAll);
        let targets: Vec<TargetHealth> = (0..4).map(|_| TargetHealth::default()).collect();
        let pool = &targets;
        let mut outcomes = Vec::new();
        for i in 0..4 {
            for _ in 0..3 {
                if let Some(o) = h.record(pool, i, false, t0, 0.0) {
                    outcomes.push(o);
                }
            }
        }
        let ejected = outcomes.iter().filter(|o| matches!(o, Ejection::Ejected(_))).count();
        assert_eq!(ejected, 2, "50% of 4");
        assert_eq!(outcomes.iter().filter(|o| **o == Ejection::CapReached).count(), 2);

        let h = PoolHealth::new(t0, Some(passive(false)), false, AllUnhealthy::ServeAll);
        assert!(!h.checked, "observe-only checks never take a target out");
        let targets: Vec<TargetHealth> = (0..2).map(|_| TargetHealth::default()).collect();
        let pool = &targets;
        let last = (0..3).filter_map(|_| h.record(pool, 0, false, t0, 0.0)).last();
        assert_eq!(last, Some(Ejection::WouldEject(Duration::from_secs(30))));
        assert!(h.available(&pool[0], h.ms(t0)));
    }

    /// A pool with active and passive checks at `t0`: target 0 ejected
    /// (three failures), target 1 found down by its probes.
    fn ejected_and_down(t0: Instant) -> (PoolHealth, Vec<TargetHealth>) {
        let old = PoolHealth::new(t0, Some(passive(true)), true, AllUnhealthy::ServeAll);
        let targets: Vec<TargetHealth> = (0..2).map(|_| TargetHealth::default()).collect();
        for _ in 0..3 {
            old.record(&targets, 0, false, t0, 0.0);
        }
        targets[1].set_probe_down(true);
        (old, targets)
    }

    /// The targets of `new`, taking over what `old`'s knew.
    fn taken_over(new: &PoolHealth, old: &PoolHealth, targets: &[TargetHealth]) -> Vec<TargetHealth> {
        let fresh: Vec<TargetHealth> = (0..targets.len()).map(|_| TargetHealth::default()).collect();
        for (f, t) in fresh.iter().zip(targets) {
            new.carry_over(f, old, t);
        }
        fresh
    }

    #[test]
    fn a_new_pool_takes_over_what_the_old_one_knew() {
        let t0 = Instant::now();
        let (old, targets) = ejected_and_down(t0);
        let t1 = t0 + Duration::from_secs(10);
        let new = PoolHealth::new(t1, Some(passive(true)), true, AllUnhealthy::ServeAll);
        let fresh = taken_over(&new, &old, &targets);
        assert_eq!(new.state(&fresh[0], t1 + Duration::from_secs(19)), State::Ejected, "30 s from t0");
        assert_eq!(new.state(&fresh[0], t1 + Duration::from_secs(20)), State::Healthy);
        assert_eq!(new.state(&fresh[1], t1), State::Unhealthy);
    }

    /// A reload that drops the checks drops their verdicts: nothing would
    /// bring the target back (Envoy forgets a cluster's health-check state
    /// when its health checking is removed).
    #[test]
    fn a_reload_without_the_checks_forgets_their_verdicts() {
        let t0 = Instant::now();
        let (old, targets) = ejected_and_down(t0);
        let t1 = t0 + Duration::from_secs(1);
        // Passive checks only: the probes' verdict goes, the ejection stays.
        let new = PoolHealth::new(t1, Some(passive(true)), false, AllUnhealthy::ServeAll);
        let fresh = taken_over(&new, &old, &targets);
        assert_eq!(new.state(&fresh[1], t1), State::Healthy);
        assert!(new.available(&fresh[1], new.ms(t1)));
        assert_eq!(new.state(&fresh[0], t1), State::Ejected);
        // Active checks only (or observe-only passive ones): the ejection goes.
        for passive in [None, Some(self::passive(false))] {
            let new = PoolHealth::new(t1, passive, true, AllUnhealthy::ServeAll);
            let fresh = taken_over(&new, &old, &targets);
            assert_eq!(new.state(&fresh[0], t1), State::Healthy);
            assert_eq!(new.state(&fresh[1], t1), State::Unhealthy, "the probes still run");
        }
    }

    /// A reload long after an ejection ended does not keep its count: the
    /// next ejection is the first step again, as without the reload.
    #[test]
    fn an_ejection_long_over_is_not_counted_after_a_reload() {
        let t0 = Instant::now();
        let old = PoolHealth::new(t0, Some(passive(true)), false, AllUnhealthy::ServeAll);
        let targets: Vec<TargetHealth> = (0..2).map(|_| TargetHealth::default()).collect();
        let ejected = (0..3).filter_map(|_| old.record(&targets, 0, false, t0, 0.0)).last();
        assert_eq!(ejected, Some(Ejection::Ejected(Duration::from_secs(30))));
        // Back at 30 s; the reload comes at 200 s, more than `max_ejection` (100 s) later.
        let reload = t0 + Duration::from_secs(200);
        let new = PoolHealth::new(reload, Some(passive(true)), false, AllUnhealthy::ServeAll);
        let fresh: Vec<TargetHealth> = (0..2).map(|_| TargetHealth::default()).collect();
        new.carry_over(&fresh[0], &old, &targets[0]);
        let soon = reload + Duration::from_millis(500);
        let again = (0..3).filter_map(|_| new.record(&fresh, 0, false, soon, 0.0)).last();
        assert_eq!(again, Some(Ejection::Ejected(Duration::from_secs(30))), "the first step again");
        // Back within `max_ejection` of the reload: the count goes on.
        let old = PoolHealth::new(t0, Some(passive(true)), false, AllUnhealthy::ServeAll);
        let targets: Vec<TargetHealth> = (0..2).map(|_| TargetHealth::default()).collect();
        for _ in 0..3 {
            let _ = old.record(&targets, 0, false, t0, 0.0);
        }
        let reload = t0 + Duration::from_secs(40);
        let new = PoolHealth::new(reload, Some(passive(true)), false, AllUnhealthy::ServeAll);
        let fresh: Vec<TargetHealth> = (0..2).map(|_| TargetHealth::default()).collect();
        new.carry_over(&fresh[0], &old, &targets[0]);
        let soon = reload + Duration::from_secs(1);
        let again = (0..3).filter_map(|_| new.record(&fresh, 0, false, soon, 0.0)).last();
        assert_eq!(again, Some(Ejection::Ejected(Duration::from_secs(60))), "the second step");
    }

    #[test]
    fn one_target_may_always_be_ejected() {
        let t0 = Instant::now();
        let h = PoolHealth::new(t0, Some(Passive { max_ejected: 0.1, ..passive(true) }), false, AllUnhealthy::Fail);
        let targets: Vec<TargetHealth> = (0..2).map(|_| TargetHealth::default()).collect();
        let pool = &targets;
        let last = (0..3).filter_map(|_| h.record(pool, 1, false, t0, 0.0)).last();
        assert!(matches!(last, Some(Ejection::Ejected(_))));
    }
}

//! GCRA (the generic cell rate algorithm): a token bucket stored as one
//! number, the theoretical arrival time (TAT), and no timer. Pure
//! arithmetic on times given by the caller, so tests need no clock.
//!
//! With emission interval `T` (period / rate) and burst `B`, a request at
//! `now` is admitted when `TAT - now <= B·T`; admitting it moves TAT to
//! `max(TAT, now) + T`. NGINX `limit_req` modes map onto this:
//! `nodelay` admits the whole burst at once; `delay` admits the first
//! `delay` excess requests at once and holds the rest until their slot.

/// One limit's parameters, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Emission interval `T`.
    pub interval: u64,
    /// Burst tolerance `B·T`.
    pub tolerance: u64,
    /// Excess admitted without waiting (`u64::MAX`: nodelay).
    pub free_excess: u64,
    /// How far past now a stored TAT can be: `B·T + T`, or the most of the
    /// limits sharing its `name` (each adds its own `T` to one TAT).
    pub span: u64,
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// When rejected: how long until a request would be admitted.
    pub retry_after: u64,
    /// When admitted in delay mode: how long to hold the request.
    pub delay: u64,
    /// Requests that could still be admitted right now.
    pub remaining: u64,
    /// Time until the bucket is full again.
    pub reset: u64,
}

impl Gcra {
    pub fn new(count: u64, period_ns: u64, burst: u64, delay: Option<u64>) -> Gcra {
        let interval = (period_ns / count.max(1)).max(1);
        let tolerance = interval.saturating_mul(burst);
        Gcra {
            interval,
            tolerance,
            free_excess: delay.map_or(u64::MAX, |d| interval.saturating_mul(d)),
            span: tolerance.saturating_add(interval),
        }
    }

    /// The limit, sharing its TAT with limits that can set it as far as
    /// `span` past now: a faster one must not cut what a slower one set.
    pub fn sharing(mut self, span: u64) -> Gcra {
        self.span = self.span.max(span);
        self
    }

    /// Requests admitted at once from an idle state.
    pub fn capacity(&self) -> u64 {
        self.tolerance / self.interval + 1
    }

    /// Decides for a request at `now` given the stored `tat` (0 when new);
    /// returns the decision and the TAT to store: when admitted, or when
    /// the stored one was later than this limit could have set.
    pub fn check(&self, tat: u64, now: u64) -> (Decision, Option<u64>) {
        // No later than this limit itself (or the slowest sharing its name)
        // could have set it (`now + B·T + T`): a TAT stored under a slower
        // limit before a reload raised it (NGINX counts excess in requests,
        // which a faster rate drains at once) or a corrupt shared counter
        // holds a client back no longer than one interval.
        let latest = now.saturating_add(self.span);
        let (stored, tat) = (tat, tat.max(now).min(latest));
        let excess = tat - now;
        if excess > self.tolerance {
            let retry_after = excess - self.tolerance;
            // A cut TAT is stored as cut, so that it drains from here.
            let cut = (stored > latest).then_some(tat);
            return (Decision { allowed: false, retry_after, delay: 0, remaining: 0, reset: excess }, cut);
        }
        // Saturating: a burst's time is bounded by the config (half of
        // u64), the clock by the process's life; never a wrap.
        let new_tat = tat.saturating_add(self.interval);
        let delay = excess.saturating_sub(self.free_excess);
        let used = (new_tat - now).div_ceil(self.interval);
        let remaining = self.capacity().saturating_sub(used);
        (Decision { allowed: true, retry_after: 0, delay, remaining, reset: new_tat - now }, Some(new_tat))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn run(g: &Gcra, times: &[u64]) -> Vec<Decision> {
        let mut tat = 0;
        times
            .iter()
            .map(|&now| {
                let (d, new) = g.check(tat, now);
                if let Some(t) = new {
                    tat = t;
                }
                d
            })
            .collect()
    }

    #[test]
    fn rate_without_burst() {
        // 10/s, no burst: one every 100 ms.
        let g = Gcra::new(10, S, 0, None);
        let d = run(&g, &[0, 50_000_000, 100_000_000, 150_000_000, 200_000_000]);
        assert_eq!(d.iter().map(|d| d.allowed).collect::<Vec<_>>(), vec![true, false, true, false, true]);
        assert_eq!(d[1].retry_after, 50_000_000);
    }

    #[test]
    fn burst_is_admitted_at_once_then_the_rate() {
        // 10/s with burst 20: 21 at once, then one per 100 ms.
        let g = Gcra::new(10, S, 20, None);
        let d = run(&g, &[0; 22]);
        assert_eq!(d.iter().filter(|d| d.allowed).count(), 21);
        assert_eq!(d[0].remaining, 20);
        assert_eq!(d[20].remaining, 0);
        assert!(!d[21].allowed);
        assert_eq!(d[21].retry_after, 100_000_000);
        assert!(d.iter().all(|d| d.delay == 0), "nodelay");
    }

    #[test]
    fn delay_mode_holds_excess_until_its_slot() {
        // NGINX `rate=10r/s burst=5` (no nodelay): excess waits for its slot.
        let g = Gcra::new(10, S, 5, Some(0));
        let d = run(&g, &[0; 7]);
        let delays: Vec<u64> = d.iter().map(|d| d.delay / 1_000_000).collect();
        assert_eq!(delays[..6], [0, 100, 200, 300, 400, 500]);
        assert!(!d[6].allowed, "beyond the burst is rejected");
        // `delay=2`: the first two excess requests go at once.
        let g = Gcra::new(10, S, 5, Some(2));
        let delays: Vec<u64> = run(&g, &[0; 6]).iter().map(|d| d.delay / 1_000_000).collect();
        assert_eq!(delays, vec![0, 0, 0, 100, 200, 300]);
    }

    /// A TAT from a slower limit (before a reload made it faster) or a
    /// corrupt one is read as no later than this limit could have set it.
    #[test]
    fn a_later_tat_than_the_limit_could_set_counts_as_its_latest() {
        let g = Gcra::new(100, S, 50, None);
        let (d, cut) = g.check(180 * S, 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, 10_000_000, "one interval, not three minutes");
        assert!(g.check(cut.unwrap(), 10_000_000).0.allowed, "the cut TAT drains");
        let (_, cut) = g.check(u64::MAX, S);
        assert!(g.check(cut.unwrap(), S + 10_000_000).0.allowed);
        // Its own latest TAT changes nothing.
        let own = g.tolerance + g.interval;
        assert_eq!(g.check(own, 0).0.retry_after, g.interval);
    }

    /// Two limits sharing a name share one TAT: the faster one's checks,
    /// refused or admitted, leave what the slower one set (a route at
    /// 1/min admitted 5 requests in 1.5 s beside one at 10/s).
    #[test]
    fn a_faster_limit_sharing_the_tat_does_not_cut_a_slower_ones() {
        let slow = Gcra::new(1, 60 * S, 0, None);
        let fast = Gcra::new(10, S, 0, None);
        let span = slow.span.max(fast.span);
        let (slow, fast) = (slow.sharing(span), fast.sharing(span));
        let (d, tat) = slow.check(0, 0);
        assert!(d.allowed);
        let mut tat = tat.unwrap();
        for now in [S / 10, S / 5, S / 2] {
            let (d, stored) = fast.check(tat, now);
            assert!(!d.allowed, "the slow limit's minute is the shared budget's");
            if let Some(t) = stored {
                tat = t;
            }
            assert!(!slow.check(tat, now + S / 5).0.allowed, "at {now}");
        }
        assert!(slow.check(tat, 60 * S).0.allowed);
    }

    #[test]
    fn replenishes_with_time() {
        let g = Gcra::new(2, S, 1, None);
        let d = run(&g, &[0, 0, 0, S / 2, S / 2, 2 * S]);
        assert_eq!(d.iter().map(|d| d.allowed).collect::<Vec<_>>(), vec![true, true, false, true, false, true]);
        assert_eq!(d[5].remaining, 1);
    }
}

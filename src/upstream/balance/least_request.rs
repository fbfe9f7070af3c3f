//! Least in-flight requests, relative to weight. Ties rotate by weight, so
//! an idle pool still spreads like weighted round robin.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::upstream::Target;

#[derive(Debug, Default)]
pub struct LeastRequest {
    rotation: AtomicUsize,
    /// The ties' rotation of the picks made again (a retry, a first pick
    /// out of service): on the first picks' turn, an idle pool's retry
    /// went to the target after the failing one every time, and took
    /// that target's first tries too.
    again: AtomicUsize,
}

impl LeastRequest {
    pub fn pick(&self, targets: &[Target]) -> usize {
        self.least(targets, &self.rotation, |_| true).unwrap_or(0)
    }

    /// The least loaded among the targets `may` lets take requests (an
    /// ejected one, idle by force, would otherwise always look least
    /// loaded), ties rotating on a turn of their own.
    pub fn pick_where(&self, targets: &[Target], may: impl Fn(usize) -> bool) -> Option<usize> {
        self.least(targets, &self.again, may)
    }

    /// The `turn`-th (rotating) of the targets `may` allows with the least
    /// load relative to weight: ties share evenly among the allowed ones
    /// (a rotating start over all targets gave the one after an excluded
    /// target its share too).
    fn least(&self, targets: &[Target], turn: &AtomicUsize, may: impl Fn(usize) -> bool) -> Option<usize> {
        let load = |i: usize| (targets[i].in_flight() as u64, u64::from(targets[i].weight));
        // a / a_weight < b / b_weight, without division.
        let lighter = |a: (u64, u64), b: (u64, u64)| a.0 * b.1 < b.0 * a.1;
        // Ties share by weight (an idle pool's 4:1 targets get 4:1 of
        // the picks, as NGINX's `least_conn` breaks its ties by weighted
        // round robin): `ties` is the sum of their weights.
        let (mut best, mut ties) = (None::<(u64, u64)>, 0u64);
        for i in (0..targets.len()).filter(|&i| may(i)) {
            let l = load(i);
            match best {
                Some(b) if lighter(b, l) => {}
                Some(b) if !lighter(l, b) => ties += l.1.max(1),
                _ => (best, ties) = (Some(l), l.1.max(1)),
            }
        }
        let best = best?;
        let mut k = turn.fetch_add(1, Ordering::Relaxed) as u64 % ties;
        let mut first = None;
        for i in (0..targets.len()).filter(|&i| may(i)) {
            first.get_or_insert(i);
            let l = load(i);
            if !lighter(best, l) && !lighter(l, best) {
                if k < l.1.max(1) {
                    return Some(i);
                }
                k -= l.1.max(1);
            }
        }
        // Loads moved meanwhile (other threads): any allowed one.
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(weight: u32) -> Target {
        Target::new(http::uri::Scheme::HTTP, "a:1".parse().unwrap(), weight, Default::default())
    }

    #[test]
    fn prefers_the_idle_target() {
        let lr = LeastRequest::default();
        let targets = [target(1), target(1)];
        let _busy: Vec<_> = (0..3).map(|_| targets[0].begin()).chain([targets[1].begin()]).collect();
        for _ in 0..4 {
            assert_eq!(lr.pick(&targets), 1);
        }
        // Weight 4 with 3 in flight is lighter than weight 1 with 1.
        let weighted = [target(4), target(1)];
        let _busy: Vec<_> = (0..3).map(|_| weighted[0].begin()).chain([weighted[1].begin()]).collect();
        assert_eq!(lr.pick(&weighted), 0);
    }

    /// An idle pool (every target tied at no load) shares by weight.
    #[test]
    fn ties_share_by_weight() {
        let lr = LeastRequest::default();
        let targets = [target(4), target(1)];
        let mut counts = [0; 2];
        for _ in 0..20 {
            counts[lr.pick(&targets)] += 1;
        }
        assert_eq!(counts, [16, 4]);
    }
}

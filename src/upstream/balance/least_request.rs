//! Least in-flight requests, relative to weight. Ties rotate, so an idle
//! pool still spreads like round robin.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::upstream::Target;

#[derive(Debug, Default)]
pub struct LeastRequest {
    rotation: AtomicUsize,
}

impl LeastRequest {
    pub fn pick(&self, targets: &[Target]) -> usize {
        self.pick_where(targets, |_| true).unwrap_or(0)
    }

    /// The least loaded among the targets `may` lets take requests (an
    /// ejected one, idle by force, would otherwise always look least loaded).
    pub fn pick_where(&self, targets: &[Target], may: impl Fn(usize) -> bool) -> Option<usize> {
        let n = targets.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % n.max(1);
        let load_of = |t: &Target| (t.in_flight() as u64, u64::from(t.weight));
        let mut best: Option<(usize, (u64, u64))> = None;
        for step in 0..n {
            let i = (start + step) % n;
            if !may(i) {
                continue;
            }
            let load = load_of(&targets[i]);
            // load_i / weight_i < best / best_weight, without division.
            if best.is_none_or(|(_, b)| load.0 * b.1 < b.0 * load.1) {
                best = Some((i, load));
            }
        }
        best.map(|(i, _)| i)
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
}

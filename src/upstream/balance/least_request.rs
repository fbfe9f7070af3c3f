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
        let n = targets.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % n;
        let load_of = |t: &Target| (t.in_flight() as u64, u64::from(t.weight));
        let mut best = start;
        let mut best_load = load_of(&targets[start]);
        for step in 1..n {
            let i = (start + step) % n;
            let load = load_of(&targets[i]);
            // load_i / weight_i < best / best_weight, without division.
            if load.0 * best_load.1 < best_load.0 * load.1 {
                best = i;
                best_load = load;
            }
        }
        best
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

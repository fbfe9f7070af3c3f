//! Least in-flight requests, relative to weight. Ties rotate, so an idle
//! pool still spreads like round robin.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct LeastRequest {
    rotation: AtomicUsize,
}

impl LeastRequest {
    pub fn pick(&self, weights: &[u32], in_flight: &[&AtomicUsize]) -> usize {
        let n = in_flight.len();
        let start = self.rotation.fetch_add(1, Ordering::Relaxed) % n;
        let mut best = start;
        let mut best_load = (
            in_flight[start].load(Ordering::Relaxed) as u64,
            u64::from(weights[start]),
        );
        for step in 1..n {
            let i = (start + step) % n;
            let load = (
                in_flight[i].load(Ordering::Relaxed) as u64,
                u64::from(weights[i]),
            );
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

    #[test]
    fn prefers_the_idle_target() {
        let lr = LeastRequest::default();
        let (a, b) = (AtomicUsize::new(3), AtomicUsize::new(1));
        for _ in 0..4 {
            assert_eq!(lr.pick(&[1, 1], &[&a, &b]), 1);
        }
        // Weight 4 with 3 in flight is lighter than weight 1 with 1.
        assert_eq!(lr.pick(&[4, 1], &[&a, &b]), 0);
    }
}

//! Smooth weighted round robin (NGINX's algorithm), precomputed: the
//! schedule for one cycle of the weights is built once, and each pick is one
//! atomic increment. Weights 5:1:1 give `a a b a c a a`, not `a a a a a b c`.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct RoundRobin {
    schedule: Vec<u16>,
    next: AtomicUsize,
    /// Turns of the picks made again when the schedule's pick may not
    /// take requests.
    again: AtomicUsize,
}

impl RoundRobin {
    /// `weights` are 1..=1000 each (checked by the config); at most 1000 targets.
    pub fn new(weights: &[u32]) -> RoundRobin {
        let g = weights.iter().copied().fold(0, gcd).max(1);
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / g)).collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut schedule = Vec::with_capacity(total as usize);
        for _ in 0..total {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let best = (0..current.len()).max_by_key(|&i| (current[i], std::cmp::Reverse(i))).unwrap_or(0);
            current[best] -= total;
            schedule.push(best as u16);
        }
        if schedule.is_empty() {
            schedule.push(0);
        }
        RoundRobin { schedule, next: AtomicUsize::new(0), again: AtomicUsize::new(0) }
    }

    pub fn pick(&self) -> usize {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        usize::from(self.schedule[n % self.schedule.len()])
    }

    /// A pick among the targets `may` lets take requests, in proportion to
    /// their `weights`, for when the schedule's pick may not: the share of
    /// a target out of service goes to all the others in their weights.
    /// Asking the schedule again went wrong with weights (a heavy target's
    /// runs outlasted the asking, and the next target in the list took the
    /// rest); this has its own turn, not the schedule's.
    pub fn pick_where(&self, weights: &[u32], may: impl Fn(usize) -> bool) -> Option<usize> {
        let total: u64 = (0..weights.len()).filter(|&i| may(i)).map(|i| u64::from(weights[i])).sum();
        if total == 0 {
            return None;
        }
        let mut turn = self.again.fetch_add(1, Ordering::Relaxed) as u64 % total;
        for (i, &w) in weights.iter().enumerate() {
            if !may(i) {
                continue;
            }
            if turn < u64::from(w) {
                return Some(i);
            }
            turn -= u64::from(w);
        }
        None
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_and_proportional() {
        let rr = RoundRobin::new(&[5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| rr.pick()).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
        let rr = RoundRobin::new(&[2, 4]);
        let picks: Vec<usize> = (0..6).map(|_| rr.pick()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 4);
    }

    #[test]
    fn a_target_out_of_service_leaves_its_share_to_the_others_in_their_weights() {
        // 5:1:2, the heavy one out: the other two split 1:2, whatever the turn.
        let weights = [5, 1, 2];
        let rr = RoundRobin::new(&weights);
        let mut counts = [0; 3];
        for _ in 0..8 * 30 {
            let first = rr.pick();
            let pick = if first == 0 { rr.pick_where(&weights, |i| i != 0).unwrap() } else { first };
            counts[pick] += 1;
        }
        assert_eq!(counts, [0, 80, 160]);
        assert_eq!(rr.pick_where(&weights, |_| false), None);
    }
}

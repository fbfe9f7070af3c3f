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
        let mut schedule = if total as u64 * weights.len() as u64 > MAX_SMOOTH_WORK {
            by_deadline(&weights, total)
        } else {
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
            schedule
        };
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

/// Past this much work (picks in a cycle × targets), the cycle is laid
/// out by `by_deadline` instead: NGINX's algorithm looks at every target
/// for each pick, and 1,000 targets of weights 999 and 1,000 (a cycle of
/// a million picks) took 70 s of `check` in a debug build, at every start
/// and reload.
const MAX_SMOOTH_WORK: u64 = 1 << 22;

/// A cycle as smooth and as proportional, in O(picks × log targets):
/// target `i`'s `k`-th turn is due at `(k + ½) / weight_i` of the cycle,
/// and turns go in the order they are due (ties to the first target).
fn by_deadline(weights: &[i64], total: i64) -> Vec<u16> {
    use std::cmp::{Ordering, Reverse};
    use std::collections::BinaryHeap;
    #[derive(PartialEq, Eq)]
    struct Turn {
        /// `2k + 1`: the turn's due time is `twice_k_plus_1 / (2 × weight)`.
        twice_k_plus_1: u64,
        weight: u64,
        target: usize,
    }
    impl Ord for Turn {
        fn cmp(&self, other: &Self) -> Ordering {
            (self.twice_k_plus_1 * other.weight)
                .cmp(&(other.twice_k_plus_1 * self.weight))
                .then(self.target.cmp(&other.target))
        }
    }
    impl PartialOrd for Turn {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    let mut due: BinaryHeap<Reverse<Turn>> = weights
        .iter()
        .enumerate()
        .filter(|(_, w)| **w > 0)
        .map(|(target, &w)| Reverse(Turn { twice_k_plus_1: 1, weight: w as u64, target }))
        .collect();
    let mut schedule = Vec::with_capacity(total as usize);
    while schedule.len() < total as usize {
        let Some(Reverse(mut turn)) = due.pop() else { break };
        schedule.push(turn.target as u16);
        turn.twice_k_plus_1 += 2;
        due.push(Reverse(turn));
    }
    schedule
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

    /// A long cycle (1,000 targets, weights 999 and 1,000: a million picks)
    /// is laid out by due turns, at once, as proportional and spread.
    #[test]
    fn long_cycles_are_laid_out_by_due_turns() {
        let weights: Vec<u32> = (0..1000).map(|i| if i % 2 == 0 { 999 } else { 1000 }).collect();
        let rr = RoundRobin::new(&weights);
        let mut counts = vec![0u32; 1000];
        for &t in &rr.schedule {
            counts[usize::from(t)] += 1;
        }
        assert_eq!(counts, weights, "each target its weight's share of a cycle");
        // Spread: the first 1,000 picks reach 1,000 different targets.
        let first: std::collections::HashSet<u16> = rr.schedule[..1000].iter().copied().collect();
        assert_eq!(first.len(), 1000);
        // The deadline order for a small cycle is proportional and smooth too.
        assert_eq!(by_deadline(&[5, 1, 1], 7), vec![0, 0, 0, 1, 2, 0, 0]);
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

//! Consistent hashing on a ring of virtual nodes (ketama-style): a key keeps
//! its target while the pool is unchanged, and adding or removing a target
//! moves only about 1/n of the keys. xxh3 is stable across builds and
//! machines, so every gateway instance maps a key to the same target.

use std::fmt::Write as _;

use xxhash_rust::xxh3::xxh3_64;

/// Virtual nodes per unit of weight.
const VNODES_PER_WEIGHT: u32 = 100;

/// The most points a ring has (16 MiB of them): past it, every target's
/// points are scaled down alike, in their weights (Envoy caps its ring at
/// 8M). 1,000 targets of weight 1,000 made 100M points: two minutes and
/// 2.2 GB to build, at every start and reload (a reviewer's debug run).
const MAX_POINTS: u64 = 1 << 20;

#[derive(Debug)]
pub struct ConsistentHash {
    /// (point on the ring, target index), sorted by point.
    ring: Vec<(u64, u16)>,
    /// How many targets the ring has points of.
    targets: usize,
}

impl ConsistentHash {
    /// `ids` identify targets (their URLs): the ring depends on them, not on order.
    pub fn new(ids: &[String], weights: &[u32]) -> ConsistentHash {
        let wanted: u64 = weights.iter().map(|&w| u64::from(w) * u64::from(VNODES_PER_WEIGHT)).sum();
        let points = |w: u32| {
            let p = u64::from(w) * u64::from(VNODES_PER_WEIGHT);
            if wanted <= MAX_POINTS { p } else { (p * MAX_POINTS / wanted).max(1) }
        };
        let mut ring = Vec::with_capacity(wanted.min(MAX_POINTS + ids.len() as u64) as usize);
        let mut name = String::new();
        for (i, (id, &w)) in ids.iter().zip(weights).enumerate() {
            for v in 0..points(w) {
                // `{id}#{v}`, the text each point is the hash of.
                name.clear();
                name.push_str(id);
                name.push('#');
                let _ = write!(name, "{v}");
                ring.push((xxh3_64(name.as_bytes()), i as u16));
            }
        }
        ring.sort_unstable();
        ConsistentHash { ring, targets: ids.len() }
    }

    pub fn pick(&self, key: &[u8]) -> usize {
        let h = xxh3_64(key);
        let i = self.ring.partition_point(|(p, _)| *p < h);
        usize::from(self.ring.get(i).or(self.ring.first()).map_or(0, |(_, t)| *t))
    }

    /// The first target `may` lets take requests, walking on along the
    /// ring from the key's point: the keys of a target out of service go
    /// to the owners of the points after its own, which are all the others
    /// in their weights (Envoy's ring hash; the next target in the list
    /// took them all, and doubled its load). A key keeps that one
    /// stand-in while its own target is out, and comes back after.
    pub fn pick_where(&self, key: &[u8], may: impl Fn(usize) -> bool) -> Option<usize> {
        // None may: no walk over the whole ring (a million points for ten
        // targets of weight 1000) in an outage, when every request asks.
        if !(0..self.targets).any(&may) {
            return None;
        }
        let h = xxh3_64(key);
        let start = self.ring.partition_point(|(p, _)| *p < h);
        let (before, after) = self.ring.split_at(start.min(self.ring.len()));
        after.iter().chain(before).map(|(_, t)| usize::from(*t)).find(|&t| may(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_spread() {
        let ids: Vec<String> = (0..3).map(|i| format!("http://10.0.0.{i}:80")).collect();
        let ch = ConsistentHash::new(&ids, &[1, 1, 1]);
        let mut counts = [0; 3];
        for k in 0..3000 {
            let key = format!("user-{k}");
            let t = ch.pick(key.as_bytes());
            assert_eq!(t, ch.pick(key.as_bytes()));
            counts[t] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
        // A target out of service: its keys spread over the others, each
        // key to one stand-in; the other keys stay.
        let mut stand_ins = [0; 3];
        for k in 0..3000 {
            let key = format!("user-{k}");
            let own = ch.pick(key.as_bytes());
            let now = ch.pick_where(key.as_bytes(), |t| t != 1).unwrap();
            assert_eq!(now, ch.pick_where(key.as_bytes(), |t| t != 1).unwrap());
            if own == 1 {
                stand_ins[now] += 1;
            } else {
                assert_eq!(now, own);
            }
        }
        assert!(stand_ins[0] > 200 && stand_ins[2] > 200, "{stand_ins:?}");
        assert_eq!(ch.pick_where(b"k", |_| false), None);
        // The ring keeps to its size: weights scaled down alike, spread kept.
        let many: Vec<String> = (0..1000).map(|i| format!("http://10.0.{}.{}:80", i / 256, i % 256)).collect();
        let mut weights = vec![1000; 1000];
        weights[0] = 1;
        let big = ConsistentHash::new(&many, &weights);
        assert!(big.ring.len() as u64 <= MAX_POINTS + 1000, "{}", big.ring.len());
        assert!(big.ring.iter().any(|(_, t)| *t == 0), "the lightest target keeps a point");
        // Removing a target only moves the keys that were on it.
        let ch2 = ConsistentHash::new(&ids[..2], &[1, 1]);
        for k in 0..3000 {
            let key = format!("user-{k}");
            let before = ch.pick(key.as_bytes());
            if before < 2 {
                assert_eq!(ch2.pick(key.as_bytes()), before);
            }
        }
    }
}

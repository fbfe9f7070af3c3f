//! Series whose label values are only known per request (a status code, a
//! method) but come from a small bounded set: a fixed-size open-addressing
//! table without locks. A series is made the first time its key is seen
//! (once, not per request); a full table sends the rest to one overflow
//! series, so no client can make the series count grow.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The key of the overflow series.
pub const OVERFLOW: u32 = u32::MAX;

pub struct Table<T> {
    keys: Box<[AtomicU32]>,
    values: Box<[OnceLock<Box<T>>]>,
    overflow: OnceLock<Box<T>>,
    make: fn() -> T,
}

impl<T> std::fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("capacity", &self.keys.len()).finish_non_exhaustive()
    }
}

impl<T> Table<T> {
    /// `capacity` must be a power of two.
    pub fn new(capacity: usize, make: fn() -> T) -> Table<T> {
        assert!(capacity.is_power_of_two());
        Table {
            keys: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            values: (0..capacity).map(|_| OnceLock::new()).collect(),
            overflow: OnceLock::new(),
            make,
        }
    }

    /// The series of `key` (not 0, not `OVERFLOW`), made on first use.
    #[inline]
    pub fn get(&self, key: u32) -> &T {
        debug_assert!(key != 0 && key != OVERFLOW);
        let mask = self.keys.len() - 1;
        let mut i = (key.wrapping_mul(0x9E37_79B1) >> 16) as usize & mask;
        for _ in 0..self.keys.len() {
            let seen = self.keys[i].load(Ordering::Acquire);
            let mine = seen == key
                || (seen == 0
                    && match self.keys[i].compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => true,
                        Err(now) => now == key,
                    });
            if mine {
                return self.values[i].get_or_init(|| Box::new((self.make)()));
            }
            i = (i + 1) & mask;
        }
        self.overflow.get_or_init(|| Box::new((self.make)()))
    }

    /// Every series made so far, by key (`OVERFLOW` last).
    pub fn series(&self) -> Vec<(u32, &T)> {
        let mut out: Vec<(u32, &T)> = self
            .keys
            .iter()
            .zip(self.values.iter())
            .filter_map(|(k, v)| Some((k.load(Ordering::Acquire), &**v.get()?)))
            .collect();
        out.sort_by_key(|(k, _)| *k);
        out.extend(self.overflow.get().map(|v| (OVERFLOW, &**v)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn keys_find_their_series_and_overflow_is_shared() {
        let t: Table<AtomicU64> = Table::new(8, AtomicU64::default);
        for key in 1..=100u32 {
            t.get(key).fetch_add(u64::from(key), Ordering::Relaxed);
        }
        t.get(3).fetch_add(1000, Ordering::Relaxed);
        let series = t.series();
        assert_eq!(series.len(), 9, "eight slots and the overflow series");
        let total: u64 = series.iter().map(|(_, v)| v.load(Ordering::Relaxed)).sum();
        assert_eq!(total, (1..=100u64).sum::<u64>() + 1000);
        assert_eq!(series.last().unwrap().0, OVERFLOW);
        // A key that got a slot keeps it.
        let three = series.iter().find(|(k, _)| *k == 3).unwrap();
        assert_eq!(three.1.load(Ordering::Relaxed), 1003);
    }
}

//! Series whose label values are only known per request (a status code, a
//! method) but come from a small bounded set: a fixed-size open-addressing
//! table without locks. A series is made the first time its key is seen
//! (once, not per request); a full table sends the rest to an overflow
//! series per status class (the key's low 16 bits are a status code), so no
//! client can make the series count grow, and a client that filled the
//! table with its own cheap answers cannot hide the server errors that
//! follow from an alert on `5..`: they are counted as `5xx`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The key of the overflow series of statuses that are no HTTP status;
/// `OVERFLOW - c` is that of status class `c` (1 to 5: `1xx` to `5xx`).
pub const OVERFLOW: u32 = u32::MAX;

/// The status class of an overflow key (0: none), or `None` for a key of its own.
pub fn overflow_class(key: u32) -> Option<u32> {
    (key >= OVERFLOW - 5).then(|| OVERFLOW - key)
}

/// The overflow series `key` goes to when the table is full.
fn class_of(key: u32) -> usize {
    let status = key & 0xffff;
    if (100..600).contains(&status) { (status / 100) as usize } else { 0 }
}

pub struct Table<T> {
    keys: Box<[AtomicU32]>,
    values: Box<[OnceLock<Box<T>>]>,
    /// By status class (0: no status).
    overflow: [OnceLock<Box<T>>; 6],
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
            overflow: Default::default(),
            make,
        }
    }

    /// The series of `key` (not 0, not an overflow key), made on first use.
    #[inline]
    pub fn get(&self, key: u32) -> &T {
        debug_assert!(key != 0 && overflow_class(key).is_none());
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
        self.overflow[class_of(key)].get_or_init(|| Box::new((self.make)()))
    }

    /// Every series made so far, by key (the overflow ones last).
    pub fn series(&self) -> Vec<(u32, &T)> {
        let mut out: Vec<(u32, &T)> = self
            .keys
            .iter()
            .zip(self.values.iter())
            .filter_map(|(k, v)| Some((k.load(Ordering::Acquire), &**v.get()?)))
            .collect();
        out.sort_by_key(|(k, _)| *k);
        for (class, series) in self.overflow.iter().enumerate() {
            out.extend(series.get().map(|v| (OVERFLOW - class as u32, &**v)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_full_table_keeps_status_classes_apart() {
        let t: Table<AtomicU64> = Table::new(4, AtomicU64::default);
        // Filled with one client's own answers…
        for status in [200u32, 404, 413, 431] {
            t.get(1 << 16 | status).fetch_add(1, Ordering::Relaxed);
        }
        // …the server errors after it still have a series of their own class.
        t.get(1 << 16 | 500).fetch_add(1, Ordering::Relaxed);
        t.get(3 << 16 | 503).fetch_add(1, Ordering::Relaxed);
        t.get(1 << 16 | 201).fetch_add(1, Ordering::Relaxed);
        let series = t.series();
        let five = series.iter().find(|(k, _)| overflow_class(*k) == Some(5)).expect("a 5xx series");
        assert_eq!(five.1.load(Ordering::Relaxed), 2);
        let two = series.iter().find(|(k, _)| overflow_class(*k) == Some(2)).expect("a 2xx series");
        assert_eq!(two.1.load(Ordering::Relaxed), 1);
        assert_eq!(series.len(), 6);
    }

    #[test]
    fn keys_find_their_series_and_overflow_is_shared() {
        let t: Table<AtomicU64> = Table::new(8, AtomicU64::default);
        // Keys below 100 carry no status: one overflow series for all of them.
        for key in 1..=99u32 {
            t.get(key).fetch_add(u64::from(key), Ordering::Relaxed);
        }
        t.get(3).fetch_add(1000, Ordering::Relaxed);
        let series = t.series();
        assert_eq!(series.len(), 9, "eight slots and the overflow series of no status");
        let total: u64 = series.iter().map(|(_, v)| v.load(Ordering::Relaxed)).sum();
        assert_eq!(total, (1..=99u64).sum::<u64>() + 1000);
        assert_eq!(series.last().unwrap().0, OVERFLOW);
        // A key that got a slot keeps it.
        let three = series.iter().find(|(k, _)| *k == 3).unwrap();
        assert_eq!(three.1.load(Ordering::Relaxed), 1003);
    }
}

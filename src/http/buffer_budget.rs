//! The bytes the gateway holds in memory for bodies it reads whole: a
//! request body being validated, an aggregate call's answer. Each is
//! bounded per request (`max_body_size`), but not their sum: two thousand
//! slow uploads of 10 MiB would hold 20 GB. `max_buffered` bounds the sum
//! across every request of the gateway; a read that would go past it is
//! refused at once (503 and `Retry-After`), not queued, as Envoy's overload
//! manager sheds load instead of growing.
//!
//! The count is one atomic per gateway (carried across reloads: a request
//! of the last config still holds its bytes), touched once per piece of a
//! whole read, never for a streamed body.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The gateway's count of bytes held, and of reads refused.
#[derive(Debug, Default)]
pub struct Buffered {
    held: AtomicU64,
    refused: AtomicU64,
}

impl Buffered {
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The count and the config's limit, as a plan's parts use them.
#[derive(Debug, Clone)]
pub struct BufferBudget {
    count: Arc<Buffered>,
    limit: u64,
}

/// A read refused: the gateway holds `max_buffered` bytes already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub limit: u64,
}

impl OverBudget {
    pub fn detail(&self) -> String {
        format!(
            "the gateway's memory for bodies read whole (max_buffered, {} bytes) is taken; try again shortly",
            self.limit
        )
    }
}

/// About the memory a parsed JSON document takes: each value's slot, the
/// bytes of its strings and keys, and an object's map nodes (a document of
/// many small values takes several times its text).
pub fn json_size(value: &serde_json::Value) -> u64 {
    use serde_json::Value;
    const SLOT: u64 = std::mem::size_of::<Value>() as u64;
    // serde_json's map is a B-tree: a node holds up to 11 members (their
    // keys' `String`s and values' slots), ~640 bytes even for one member.
    const NODE: u64 = 640;
    const PER_NODE: u64 = 11;
    SLOT + match value {
        Value::String(s) => s.len() as u64,
        Value::Array(items) => items.iter().map(json_size).sum(),
        Value::Object(map) => {
            let nodes = (map.len() as u64).div_ceil(PER_NODE);
            nodes * NODE + map.iter().map(|(k, v)| k.len() as u64 + json_size(v)).sum::<u64>()
        }
        _ => 0,
    }
}

impl BufferBudget {
    pub fn new(count: Arc<Buffered>, limit: u64) -> BufferBudget {
        BufferBudget { count, limit }
    }

    /// A budget of its own, for tests and `check`.
    pub fn unshared(limit: u64) -> BufferBudget {
        BufferBudget::new(Arc::default(), limit)
    }

    pub fn count(&self) -> &Arc<Buffered> {
        &self.count
    }

    /// An empty hold, to grow as a body's pieces come.
    pub fn hold(&self) -> Held {
        Held { count: self.count.clone(), limit: self.limit, bytes: 0 }
    }
}

/// Bytes counted against the budget until this is dropped.
#[derive(Debug)]
pub struct Held {
    count: Arc<Buffered>,
    limit: u64,
    bytes: u64,
}

impl Held {
    /// Counts `n` more bytes, or refuses them (and counts the refusal):
    /// what this hold has already stays counted until it is dropped.
    pub fn grow(&mut self, n: u64) -> Result<(), OverBudget> {
        let before = self.count.held.fetch_add(n, Ordering::Relaxed);
        if before.saturating_add(n) > self.limit {
            self.count.held.fetch_sub(n, Ordering::Relaxed);
            self.count.refused.fetch_add(1, Ordering::Relaxed);
            return Err(OverBudget { limit: self.limit });
        }
        self.bytes += n;
        Ok(())
    }

    /// Counts `n` bytes in place of what this hold counted (a body read
    /// into another form); on refusal it keeps counting what it had.
    pub fn resize(&mut self, n: u64) -> Result<(), OverBudget> {
        if n > self.bytes {
            return self.grow(n - self.bytes);
        }
        self.count.held.fetch_sub(self.bytes - n, Ordering::Relaxed);
        self.bytes = n;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.count.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_count_until_dropped_and_refuse_past_the_limit() {
        let budget = BufferBudget::unshared(100);
        let mut a = budget.hold();
        a.grow(60).unwrap();
        let mut b = budget.hold();
        assert_eq!(b.grow(41), Err(OverBudget { limit: 100 }));
        b.grow(40).unwrap();
        assert_eq!(budget.count().held(), 100);
        assert_eq!(budget.count().refused(), 1);
        a.resize(10).unwrap();
        assert_eq!(budget.count().held(), 50);
        drop(a);
        drop(b);
        assert_eq!(budget.count().held(), 0);
    }
}

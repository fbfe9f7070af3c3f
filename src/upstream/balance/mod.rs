//! Choosing a target in a pool. One file per algorithm; each picks an index
//! into the pool's targets without taking a lock.

mod consistent_hash;
mod least_request;
mod round_robin;

pub use consistent_hash::ConsistentHash;
pub use least_request::LeastRequest;
pub use round_robin::RoundRobin;

use super::Target;

/// Where a consistent-hash key comes from.
#[derive(Debug, Clone)]
pub enum HashKey {
    Header(http::HeaderName),
    Cookie(Box<str>),
    ClientIp,
}

#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    LeastRequest(LeastRequest),
    /// Falls back to round robin when a request carries no key.
    ConsistentHash {
        ring: ConsistentHash,
        key: HashKey,
        fallback: RoundRobin,
    },
}

impl Balancer {
    /// Picks an index into `targets`; `key` is the request's hash key, if
    /// the balancer wants one and the request has it.
    pub fn pick(&self, targets: &[Target], key: Option<&[u8]>) -> usize {
        match self {
            Balancer::RoundRobin(rr) => rr.pick(),
            Balancer::LeastRequest(lr) => lr.pick(targets),
            Balancer::ConsistentHash { ring, fallback, .. } => match key {
                Some(k) => ring.pick(k),
                None => fallback.pick(),
            },
        }
    }

    /// A pick among the targets `may` lets take requests, for when the
    /// balancer's own pick may not (out of service, or tried already): in
    /// the balancer's proportions, and for a hash key along its ring.
    pub fn pick_where(&self, targets: &[Target], key: Option<&[u8]>, may: impl Fn(usize) -> bool) -> Option<usize> {
        let weights = || targets.iter().map(|t| t.weight).collect::<Vec<u32>>();
        match self {
            Balancer::RoundRobin(rr) => rr.pick_where(&weights(), may),
            Balancer::LeastRequest(lr) => lr.pick_where(targets, may),
            Balancer::ConsistentHash { ring, .. } if key.is_some() => ring.pick_where(key.unwrap_or_default(), may),
            Balancer::ConsistentHash { fallback, .. } => fallback.pick_where(&weights(), may),
        }
    }

    pub fn hash_key(&self) -> Option<&HashKey> {
        match self {
            Balancer::ConsistentHash { key, .. } => Some(key),
            _ => None,
        }
    }
}

//! How many admin connections may be open: in all, and per client address.
//!
//! Without a bound, an idle flood of the admin port (reachable in a
//! cluster when bound to `0.0.0.0`; the token is checked per request, after
//! the connection is open) took the process's file descriptors, public
//! listeners included. A small total alone traded that for a lockout: 64
//! idle sockets from one peer shut out the probes and scrapers. So one
//! address holds at most `PER_PEER` of the `TOTAL` places: a peer can shut
//! out only itself, and many peers together only past a thousand sockets.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Admin connections open at once, from every peer together.
pub const TOTAL: usize = 1024;
/// Admin connections one client address may hold (a scraper, the live
/// page and the CLI use one or two each).
pub const PER_PEER: usize = 16;

/// The open connections, per peer (at most `TOTAL` entries: an address
/// with none is removed).
#[derive(Default)]
pub struct Places(Arc<Mutex<Counts>>);

#[derive(Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<IpAddr, usize>,
}

/// A connection's place, given back when dropped.
pub struct Place {
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
}

impl Places {
    /// A place for a connection from `peer`, unless it or all are at their limit.
    pub fn take(&self, peer: IpAddr) -> Option<Place> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = counts.per_peer.get(&peer).copied().unwrap_or(0);
        if counts.total >= TOTAL || held >= PER_PEER {
            return None;
        }
        counts.total += 1;
        counts.per_peer.insert(peer, held + 1);
        Some(Place { counts: self.0.clone(), peer })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(held) = counts.per_peer.get_mut(&self.peer) {
            *held -= 1;
            if *held == 0 {
                counts.per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_at_its_limit_shuts_out_only_itself() {
        let places = Places::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held: Vec<Place> = (0..PER_PEER).map(|_| places.take(a).expect("a place")).collect();
        assert!(places.take(a).is_none(), "past its own limit");
        let other = places.take(b).expect("another peer still gets one");
        drop(other);
        drop(held);
        assert!(places.0.lock().unwrap().per_peer.is_empty(), "no entry for a peer with none");
        // The total bounds many peers together.
        let many: Vec<Place> = (0..TOTAL)
            .map(|i| places.take(IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8])).expect("a place"))
            .collect();
        assert!(places.take(b).is_none(), "past the total");
        drop(many);
        assert!(places.take(b).is_some());
    }
}

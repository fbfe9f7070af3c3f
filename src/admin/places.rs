//! How many admin connections may be open: in all, and per client address.
//!
//! Without a bound, an idle flood of the admin port (reachable in a
//! cluster when bound to `0.0.0.0`; the token is checked per request, after
//! the connection is open) took the process's file descriptors, public
//! listeners included. A small total alone traded that for a lockout: 64
//! idle sockets from one peer shut out the probes and scrapers. So one
//! address holds at most `PER_PEER` of the `TOTAL` places. Refusing the
//! peer's next connection at its limit still locked out every client that
//! shares the address (on the default loopback bind, all of them: the
//! readiness probe, `portcullis reload`): a peer at its limit has its
//! oldest connection that is not serving a request closed instead, as a
//! browser closes an idle one for a new one. Only `PER_PEER` requests in
//! progress at once fill a peer's places.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

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
    /// A peer's connections, oldest first.
    per_peer: HashMap<IpAddr, VecDeque<Arc<Conn>>>,
}

/// What the places know of one connection.
#[derive(Default)]
pub struct Conn {
    /// Requests being served on it.
    busy: AtomicUsize,
    /// Told to close to make room (it is then no longer counted).
    evicted: AtomicBool,
    close: Notify,
}

impl Conn {
    /// Marks a request in progress until the guard is dropped.
    pub fn serving(self: &Arc<Conn>) -> Serving {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Serving(self.clone())
    }

    /// Resolves when the connection must close to make room for a newer one.
    pub async fn evicted(&self) {
        self.close.notified().await
    }
}

/// A request in progress on a connection (it is not closed for room).
pub struct Serving(Arc<Conn>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's place, given back when dropped.
pub struct Place {
    counts: Arc<Mutex<Counts>>,
    peer: IpAddr,
    pub conn: Arc<Conn>,
}

impl Places {
    /// A place for a connection from `peer`, unless all are taken, or the
    /// peer's are and every one of them is serving a request. A peer at its
    /// limit gets one by closing its oldest connection without a request.
    pub fn take(&self, peer: IpAddr) -> Option<Place> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // (A connection told to close still counts in `total` until it has:
        // the total stays bounded by `TOTAL` plus those closing.)
        let live_total = counts.per_peer.values().flatten().filter(|c| !c.evicted.load(Ordering::Acquire)).count();
        let conns = counts.per_peer.entry(peer).or_default();
        let room = if live(conns) >= PER_PEER {
            evict_oldest_idle(conns)
        } else if live_total < TOTAL {
            true
        } else {
            // All places taken, by many addresses (64 of 127/8 would do):
            // the one holding the most gives its oldest idle connection.
            let fullest = counts
                .per_peer
                .values_mut()
                .filter(|conns| conns.iter().any(|c| is_idle(c)))
                .max_by_key(|conns| live(conns));
            fullest.is_some_and(|conns| evict_oldest_idle(conns))
        };
        let conns = counts.per_peer.entry(peer).or_default();
        if !room {
            if conns.is_empty() {
                counts.per_peer.remove(&peer);
            }
            return None;
        }
        let conn = Arc::new(Conn::default());
        conns.push_back(conn.clone());
        counts.total += 1;
        Some(Place { counts: self.0.clone(), peer, conn })
    }
}

/// Connections not told to close.
fn live(conns: &VecDeque<Arc<Conn>>) -> usize {
    conns.iter().filter(|c| !c.evicted.load(Ordering::Acquire)).count()
}

/// Not told to close, and serving no request.
fn is_idle(c: &Conn) -> bool {
    !c.evicted.load(Ordering::Acquire) && c.busy.load(Ordering::Acquire) == 0
}

/// Tells the oldest idle connection to close; `false` if none is idle.
fn evict_oldest_idle(conns: &VecDeque<Arc<Conn>>) -> bool {
    match conns.iter().find(|c| is_idle(c)) {
        Some(idle) => {
            idle.evicted.store(true, Ordering::Release);
            idle.close.notify_one();
            true
        }
        None => false,
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(conns) = counts.per_peer.get_mut(&self.peer) {
            conns.retain(|c| !Arc::ptr_eq(c, &self.conn));
            if conns.is_empty() {
                counts.per_peer.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_at_its_limit_makes_room_by_closing_an_idle_connection() {
        let places = Places::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut held: Vec<Place> = (0..PER_PEER).map(|_| places.take(a).expect("a place")).collect();
        // Every one but the third is serving a request: the third is closed for a new one.
        let serving: Vec<Serving> =
            held.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, p)| p.conn.serving()).collect();
        let newer = places.take(a).expect("room made");
        assert!(held[2].conn.evicted.load(Ordering::Acquire));
        assert_eq!(held.iter().filter(|p| p.conn.evicted.load(Ordering::Acquire)).count(), 1);
        // Now all are busy: refused.
        let _busy = newer.conn.serving();
        assert!(places.take(a).is_none(), "every place serving a request");
        let other = places.take(b).expect("another peer still gets one");
        drop(other);
        drop(serving);
        held.push(newer);
        drop(held);
        drop(_busy);
        assert!(places.0.lock().unwrap().per_peer.is_empty(), "no entry for a peer with none");
        assert_eq!(places.0.lock().unwrap().total, 0);
        // The total bounds many peers together: past it, the address holding
        // the most gives its oldest idle connection, whoever asks.
        let many: Vec<Place> =
            (0..TOTAL).map(|i| places.take(IpAddr::from([10, 1, 0, (i / PER_PEER) as u8])).expect("a place")).collect();
        let serving: Vec<Serving> = many.iter().map(|p| p.conn.serving()).collect();
        assert!(places.take(b).is_none(), "past the total, every one serving a request");
        assert!(!places.0.lock().unwrap().per_peer.contains_key(&b), "a refused peer leaves no entry");
        drop(serving);
        let _in = places.take(b).expect("an idle one closed for it");
        assert_eq!(many.iter().filter(|p| p.conn.evicted.load(Ordering::Acquire)).count(), 1);
        // The oldest of its address (all hold sixteen: any of them).
        let evicted = many.iter().position(|p| p.conn.evicted.load(Ordering::Acquire)).unwrap();
        assert_eq!(evicted % PER_PEER, 0, "the oldest of its address");
        drop(many);
    }
}

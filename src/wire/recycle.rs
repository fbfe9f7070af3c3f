//! Memory reused across requests, per thread: header maps, response-head
//! buffers (`Shelf`s of cleared values) and byte slabs that small buffers
//! are cut from (`Slab`). A map costs two allocations to make and two frees
//! to drop (its entries are larger than the allocator's small-object
//! caches), more than any single header operation on the hot path; the
//! HTTP/1.1 codecs take their maps from here and give them back, cleared,
//! once a head has been written out.
//!
//! Bounded: at most `MAX_POOLED` values a shelf, and only values of ordinary
//! size are kept (a request with hundreds of headers does not pin memory).

use std::cell::RefCell;

use bytes::BytesMut;

use http::HeaderMap;

/// How many values a `Shelf` keeps; more are dropped.
const MAX_POOLED: usize = 64;
/// Maps that grew past this many entries are dropped, not kept.
const MAX_CAPACITY: usize = 48;

/// A bounded per-thread stack of cleared values, for a `thread_local!`:
/// `SHELF.with(Shelf::take)` and `SHELF.with(|s| s.keep(value))`. Callers
/// decide what is worth keeping (a cleared value of ordinary size).
pub struct Shelf<T>(RefCell<Vec<T>>);

impl<T> Default for Shelf<T> {
    fn default() -> Shelf<T> {
        Shelf::new()
    }
}

impl<T> Shelf<T> {
    pub const fn new() -> Shelf<T> {
        Shelf(RefCell::new(Vec::new()))
    }

    pub fn take(&self) -> Option<T> {
        self.0.borrow_mut().pop()
    }

    pub fn keep(&self, value: T) {
        let mut values = self.0.borrow_mut();
        if values.len() < MAX_POOLED {
            values.push(value);
        }
    }
}

/// A per-thread byte slab that buffers are cut from (`BytesMut::split`):
/// a small buffer costs no allocation of its own, and the slab is freed
/// once the last buffer cut from it is. Each piece pins the whole slab
/// while it lives, so pieces must be short-lived.
pub struct Slab {
    bytes: RefCell<BytesMut>,
    size: usize,
}

impl Slab {
    pub fn new(size: usize) -> Slab {
        Slab { bytes: RefCell::new(BytesMut::new()), size }
    }

    /// Calls `f` with the slab's free end, at least `min` bytes of room
    /// (a fresh slab replaces one with less); `f` cuts its piece off with
    /// `split`.
    pub fn cut<R>(&self, min: usize, f: impl FnOnce(&mut BytesMut) -> R) -> R {
        let mut bytes = self.bytes.borrow_mut();
        if bytes.capacity() - bytes.len() < min {
            *bytes = BytesMut::with_capacity(self.size.max(min));
        }
        f(&mut bytes)
    }

    /// A copy of `bytes` cut from the slab, as shared `Bytes`.
    pub fn copy(&self, bytes: &[u8]) -> bytes::Bytes {
        self.cut(bytes.len(), |slab| {
            slab.extend_from_slice(bytes);
            slab.split().freeze()
        })
    }
}

thread_local! {
    static MAPS: Shelf<HeaderMap> = const { Shelf::new() };
    static BUFS: Shelf<Vec<u8>> = const { Shelf::new() };
}

/// Byte buffers (for response heads) larger than this are dropped, not kept.
const MAX_BUF: usize = 16 * 1024;

/// An empty buffer with room for `capacity` bytes.
pub fn buffer(capacity: usize) -> Vec<u8> {
    let mut buf = BUFS.with(Shelf::take).unwrap_or_default();
    buf.reserve(capacity);
    buf
}

/// Takes `buf` back for a later `buffer`.
pub fn give_back_buffer(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_BUF {
        return;
    }
    buf.clear();
    BUFS.with(|bufs| bufs.keep(buf));
}

/// An empty map with room for `capacity` headers.
pub fn header_map(capacity: usize) -> HeaderMap {
    match MAPS.with(Shelf::take) {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Takes `map` back for a later `header_map`. Its values are dropped now.
pub fn give_back(mut map: HeaderMap) {
    // An empty-handed map (a response whose lines stayed raw) would be
    // handed out next and allocate after all.
    if map.capacity() == 0 || map.capacity() > MAX_CAPACITY {
        return;
    }
    map.clear();
    MAPS.with(|maps| maps.keep(map));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_come_back_empty() {
        let mut map = header_map(4);
        map.insert("x-secret", "value".parse().unwrap());
        give_back(map);
        let again = header_map(4);
        assert!(again.is_empty());
        assert!(again.capacity() >= 4);
    }

    #[test]
    fn maps_without_room_are_not_kept() {
        // Drain whatever this test thread's shelf holds, then offer an
        // empty-handed map: the next map must come fresh, with room.
        while MAPS.with(Shelf::take).is_some() {}
        give_back(HeaderMap::new());
        assert!(MAPS.with(Shelf::take).is_none());
    }
}

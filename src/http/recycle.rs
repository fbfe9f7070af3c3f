//! Header maps (and response-head buffers) reused across requests, per thread. A map costs two
//! allocations to make and two frees to drop (its entries are larger than
//! the allocator's small-object caches), more than any single header
//! operation on the hot path; the HTTP/1.1 codecs take their maps from here
//! and give them back, cleared, once a head has been written out.
//!
//! Bounded: at most `MAX_POOLED` maps a thread, and only maps of ordinary
//! size are kept (a request with hundreds of headers does not pin memory).

use std::cell::RefCell;

use http::HeaderMap;

const MAX_POOLED: usize = 64;
/// Maps that grew past this many entries are dropped, not kept.
const MAX_CAPACITY: usize = 48;

thread_local! {
    static MAPS: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Byte buffers (for response heads) larger than this are dropped, not kept.
const MAX_BUF: usize = 16 * 1024;

/// An empty buffer with room for `capacity` bytes.
pub fn buffer(capacity: usize) -> Vec<u8> {
    let mut buf = BUFS.with(|bufs| bufs.borrow_mut().pop()).unwrap_or_default();
    buf.reserve(capacity);
    buf
}

/// Takes `buf` back for a later `buffer`.
pub fn give_back_buffer(mut buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_BUF {
        return;
    }
    buf.clear();
    BUFS.with(|bufs| {
        let mut bufs = bufs.borrow_mut();
        if bufs.len() < MAX_POOLED {
            bufs.push(buf);
        }
    });
}

/// An empty map with room for `capacity` headers.
pub fn header_map(capacity: usize) -> HeaderMap {
    match MAPS.with(|maps| maps.borrow_mut().pop()) {
        Some(mut map) => {
            map.reserve(capacity);
            map
        }
        None => HeaderMap::with_capacity(capacity),
    }
}

/// Takes `map` back for a later `header_map`. Its values are dropped now.
pub fn give_back(mut map: HeaderMap) {
    if map.capacity() > MAX_CAPACITY {
        return;
    }
    map.clear();
    MAPS.with(|maps| {
        let mut maps = maps.borrow_mut();
        if maps.len() < MAX_POOLED {
            maps.push(map);
        }
    });
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
}

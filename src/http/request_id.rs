//! Request ids: one per request, returned to the client and sent upstream,
//! so that one id follows a request through every log.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::wire::recycle::Slab;

pub const HEADER: HeaderName = crate::wire::names::X_REQUEST_ID;

/// An incoming id is reused only from a trusted proxy and only if it is a
/// sane token (1-128 of `[A-Za-z0-9._:-]`); otherwise a fresh one is made.
pub fn take_or_generate(headers: &HeaderMap, peer_trusted: bool) -> HeaderValue {
    if peer_trusted
        && let Some(v) = headers.get(&HEADER)
        && is_valid(v.as_bytes())
    {
        return v.clone();
    }
    generate()
}

fn is_valid(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Ids are cut from a per-thread slab of this many bytes: an id then costs
/// no allocation of its own, and copies of it (upstream, response) share it.
const SLAB: usize = 4096;

thread_local! {
    static IDS: Slab = Slab::new(SLAB);
}

/// Each byte's two hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    pairs
};

/// 128 random bits as 32 hex digits.
pub fn generate() -> HeaderValue {
    let random = rand::random::<u128>().to_be_bytes();
    let mut id = [0u8; 32];
    for (pair, byte) in id.chunks_exact_mut(2).zip(random) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
    let bytes = IDS.with(|slab| slab.copy(&id));
    HeaderValue::from_maybe_shared(bytes).expect("hex digits are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_valid_ids_from_trusted_peers() {
        let mut h = HeaderMap::new();
        h.insert(HEADER, "abc-123".parse().unwrap());
        assert_eq!(take_or_generate(&h, true), "abc-123");
        assert_ne!(take_or_generate(&h, false), "abc-123");
        h.insert(HEADER, "bad id with spaces".parse().unwrap());
        let id = take_or_generate(&h, true);
        assert_eq!(id.len(), 32);
    }

    #[test]
    fn generated_ids_are_hex_and_differ() {
        let ids: Vec<HeaderValue> = (0..300).map(|_| generate()).collect();
        for id in &ids {
            assert!(id.len() == 32 && id.as_bytes().iter().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        }
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "ids cut from the same slab stay distinct");
        assert_eq!(HEX_PAIRS[0xa5], *b"a5");
    }
}

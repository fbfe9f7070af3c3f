//! A queue of byte buffers written with vectored writes: what a head and
//! the body pieces at hand become, so that one `writev` sends them all.

use std::io::IoSlice;

use bytes::{Buf, Bytes};
use smallvec::SmallVec;

/// Buffers handed to one `writev` at most.
pub const MAX_SLICES: usize = 32;

#[derive(Debug, Default)]
pub struct WriteQueue {
    /// Inline for a head and a body piece or two: no allocation per message.
    bufs: SmallVec<[Bytes; 4]>,
    len: usize,
}

impl WriteQueue {
    pub fn new() -> WriteQueue {
        WriteQueue::default()
    }

    /// `data` as one chunk of a chunked body (RFC 9112 §7.1).
    pub fn push_chunk(&mut self, data: Bytes) {
        if !data.is_empty() {
            self.push(Bytes::from(format!("{:x}\r\n", data.len())));
            self.push(data);
            self.push(Bytes::from_static(b"\r\n"));
        }
    }

    /// The last chunk of a chunked body, with no trailers.
    pub fn push_last_chunk(&mut self) {
        self.push(Bytes::from_static(b"0\r\n\r\n"));
    }

    pub fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.len += bytes.len();
            self.bufs.push(bytes);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Bytes queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Buffers queued.
    pub fn count(&self) -> usize {
        self.bufs.len()
    }

    /// Fills `slices` with `first` (bytes the caller keeps, written before
    /// the queue, when not empty) and the front of the queue; returns how
    /// many were filled.
    pub fn slices_after<'a>(&'a self, first: &'a [u8], slices: &mut [IoSlice<'a>; MAX_SLICES]) -> usize {
        let skip = usize::from(!first.is_empty());
        slices[0] = IoSlice::new(first);
        let count = (slices.len() - skip).min(self.bufs.len());
        for (slice, bytes) in slices[skip..].iter_mut().zip(&self.bufs) {
            *slice = IoSlice::new(bytes);
        }
        count + skip
    }

    /// Drops the first `n` written bytes.
    pub fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        let whole = self
            .bufs
            .iter()
            .take_while(|b| {
                let fits = b.len() <= n;
                if fits {
                    n -= b.len();
                }
                fits
            })
            .count();
        self.bufs.drain(..whole);
        if n > 0
            && let Some(first) = self.bufs.first_mut()
        {
            first.advance(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_buffers() {
        let mut q = WriteQueue::new();
        for b in [&b"abc"[..], b"de", b"", b"fgh"] {
            q.push(Bytes::from_static(b));
        }
        assert_eq!((q.count(), q.len()), (3, 8));
        q.advance(4);
        assert_eq!(&q.bufs[..], [Bytes::from_static(b"e"), Bytes::from_static(b"fgh")]);
        q.advance(1);
        assert_eq!(&q.bufs[..], [Bytes::from_static(b"fgh")]);
        q.advance(3);
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
    }
}

//! An upstream response's header lines kept as they arrived: the head's
//! bytes and where each line sits, with its name parsed. Building a
//! `HeaderMap` from them (a value object, a hash and an insert per line)
//! and writing the map back out is most of what proxying a response costs;
//! when the response goes straight to an HTTP/1.1 client and nothing in
//! the response phase needs to look inside, the lines are written as they
//! came (`server/h1`), with the response phase's edits applied on the way.
//! Everything else merges them into the map first (`into_map`).
//!
//! Hop-by-hop lines never get here (the upstream codec drops them).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::recycle::Shelf;

#[derive(Debug, Clone)]
struct Line {
    name: HeaderName,
    /// `name: value`, without the line break.
    line: (u32, u32),
    value: (u32, u32),
}

#[derive(Debug, Clone, Default)]
pub struct RawHeaders {
    head: Bytes,
    /// A Vec, not inline: the head is moved several times on its way to the
    /// writer, and copying inline lines cost more than an allocation (and
    /// the Vecs are reused, see `LINES`).
    lines: Vec<Line>,
}

impl RawHeaders {
    /// Lines of `head`, which `spans` locate: the name, where the line
    /// starts, and where its value starts and ends. httparse has checked
    /// them (no CR, LF or other control bytes in a value).
    pub fn new(head: Bytes, spans: impl Iterator<Item = (HeaderName, usize, usize, usize)>) -> RawHeaders {
        let mut lines = LINES.with(Shelf::take).unwrap_or_default();
        lines.extend(spans.map(|(name, start, value_start, value_end)| Line {
            name,
            line: (start as u32, value_end as u32),
            value: (value_start as u32, value_end as u32),
        }));
        RawHeaders { head, lines }
    }

    /// Each line's name and its `name: value` bytes, as received.
    pub fn lines(&self) -> impl Iterator<Item = (&HeaderName, &[u8])> {
        self.lines.iter().map(|l| (&l.name, &self.head[l.line.0 as usize..l.line.1 as usize]))
    }

    /// The values of the lines named `name`, in order.
    pub fn get_all<'s>(&'s self, name: &'s HeaderName) -> impl Iterator<Item = &'s [u8]> + 's {
        self.lines.iter().filter(move |l| l.name == name).map(|l| &self.head[l.value.0 as usize..l.value.1 as usize])
    }

    /// Drops every line named `name`.
    pub fn remove(&mut self, name: &HeaderName) {
        self.lines.retain(|l| l.name != name);
    }

    /// Lines from `(name, value)` pairs, written `Name: value` (tests).
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> RawHeaders {
        let mut head = Vec::new();
        let mut spans = Vec::new();
        for (name, value) in pairs {
            let start = head.len();
            head.extend_from_slice(format!("{name}: {value}").as_bytes());
            let value_start = head.len() - value.len();
            spans.push((HeaderName::from_bytes(name.as_bytes()).unwrap(), start, value_start, head.len()));
            head.extend_from_slice(b"\r\n");
        }
        RawHeaders::new(Bytes::from(head), spans.into_iter())
    }

    /// Appends every line to `map` (after what the map already holds).
    pub fn into_map(mut self, map: &mut HeaderMap) {
        map.reserve(self.lines.len());
        for l in self.lines.drain(..) {
            let value = self.head.slice(l.value.0 as usize..l.value.1 as usize);
            // httparse admits exactly what HeaderValue does; a line that
            // still fails is dropped rather than forwarded unchecked.
            if let Ok(value) = HeaderValue::from_maybe_shared(value) {
                map.append(l.name, value);
            }
        }
    }
}

/// Line lists longer than this are dropped, not kept.
const MAX_KEPT_LINES: usize = 64;

thread_local! {
    /// Line lists reused per thread: a response's head costs no allocation
    /// for them.
    static LINES: Shelf<Vec<Line>> = const { Shelf::new() };
}

impl Drop for RawHeaders {
    fn drop(&mut self) {
        let mut lines = std::mem::take(&mut self.lines);
        if lines.capacity() == 0 || lines.capacity() > MAX_KEPT_LINES {
            return;
        }
        lines.clear();
        LINES.with(|pool| pool.keep(lines));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RawHeaders {
        let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\nServer: x\r\nX-A:  1\r\nx-a: 2\r\n\r\n");
        let at = |s: &str| head.windows(s.len()).position(|w| w == s.as_bytes()).unwrap();
        let spans = vec![
            (HeaderName::from_static("server"), at("Server"), at("x\r\n"), at("x\r\n") + 1),
            (HeaderName::from_static("x-a"), at("X-A"), at("1\r\n"), at("1\r\n") + 1),
            (HeaderName::from_static("x-a"), at("x-a"), at("2\r\n"), at("2\r\n") + 1),
        ];
        RawHeaders::new(head.clone(), spans.into_iter())
    }

    #[test]
    fn lines_as_received_and_into_a_map() {
        let raw = sample();
        let lines: Vec<&[u8]> = raw.lines().map(|(_, l)| l).collect();
        assert_eq!(lines, [&b"Server: x"[..], b"X-A:  1", b"x-a: 2"]);
        let x_a = HeaderName::from_static("x-a");
        assert_eq!(raw.get_all(&x_a).collect::<Vec<_>>(), [&b"1"[..], b"2"], "every line's value");
        assert_eq!(raw.get_all(&HeaderName::from_static("date")).count(), 0);
        let mut map = HeaderMap::new();
        raw.into_map(&mut map);
        assert_eq!(map["server"], "x");
        let values: Vec<_> = map.get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
    }

    #[test]
    fn remove_drops_every_line_of_a_name() {
        let mut raw = sample();
        raw.remove(&HeaderName::from_static("x-a"));
        assert_eq!(raw.lines().count(), 1);
    }
}

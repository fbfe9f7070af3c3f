//! The `Cache-Control` an aggregate answer gets from its parts. The answer
//! is a new resource made of several: no cache may keep it longer, or
//! share it more widely, than the strictest of its parts allows. Without
//! this, a backend's `private, no-store` was lost in the merge and a shared
//! cache could keep one caller's data for the next (heuristically, RFC 9111
//! §4.2.2; an API key in `X-API-Key` is no `Authorization` to it, §3.5).

use http::HeaderValue;

/// What one answer's `Cache-Control` says, as far as the merge needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Caching {
    pub no_store: bool,
    pub private: bool,
    pub no_cache: bool,
    /// `max-age` in seconds (`None`: not given, or not readable).
    pub max_age: Option<u64>,
    /// `s-maxage`: a shared cache's `max-age` (RFC 9111 §5.2.2.10).
    pub s_maxage: Option<u64>,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
}

/// Delta-seconds (RFC 9111 §1.2.2): digits only; one too large for the
/// cache counts as 2^31.
fn delta_seconds(v: &str) -> Option<u64> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(u64::MAX).min(1 << 31))
}

/// The smaller of two optional ages.
fn least(a: Option<u64>, b: u64) -> Option<u64> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl Caching {
    /// Reads every `Cache-Control` line of an answer (directive names in
    /// any case, RFC 9111 §5.2; `max-age` as a number, quoted or not).
    pub fn of<'v>(lines: impl Iterator<Item = &'v [u8]>) -> Caching {
        let mut c = Caching::default();
        for line in lines {
            let Ok(line) = std::str::from_utf8(line) else {
                // Unreadable: treated as the strictest.
                c.no_store = true;
                continue;
            };
            for directive in line.split(',') {
                let (name, value) = match directive.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (directive.trim(), None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => c.no_store = true,
                    "private" => c.private = true,
                    "no-cache" => c.no_cache = true,
                    "must-revalidate" => c.must_revalidate = true,
                    "proxy-revalidate" => c.proxy_revalidate = true,
                    // Given twice, the smaller (the stricter) counts; unreadable, none.
                    "max-age" => match value.and_then(delta_seconds) {
                        Some(age) => c.max_age = least(c.max_age, age),
                        None => c.no_cache = true,
                    },
                    "s-maxage" => match value.and_then(delta_seconds) {
                        Some(age) => c.s_maxage = least(c.s_maxage, age),
                        None => c.no_cache = true,
                    },
                    _ => {}
                }
            }
        }
        c
    }
}

/// The merged answer's `Cache-Control`, from its parts' and whether the
/// calls carried the caller's identity (`personal`: the answer is that
/// caller's, whatever the parts say): `no-store` if any part says so;
/// else `private` if any part is or the answer is personal, `no-cache` if
/// any part says so, `must-revalidate`/`proxy-revalidate` if any part
/// does, the smallest `max-age` when every part gives one, and, when a
/// part gives `s-maxage`, the smallest age a shared cache may keep each
/// part (its `s-maxage`, else its `max-age`). `None`: nothing to say (no
/// part says anything), as a proxied answer without the header.
pub(super) fn merged(parts: &[Caching], personal: bool) -> Option<HeaderValue> {
    if parts.iter().any(|c| c.no_store) {
        return Some(HeaderValue::from_static("no-store"));
    }
    let mut directives: Vec<String> = Vec::new();
    if personal || parts.iter().any(|c| c.private) {
        directives.push("private".into());
    }
    if parts.iter().any(|c| c.no_cache) {
        directives.push("no-cache".into());
    }
    if parts.iter().any(|c| c.must_revalidate) {
        directives.push("must-revalidate".into());
    }
    if parts.iter().any(|c| c.proxy_revalidate) {
        directives.push("proxy-revalidate".into());
    }
    let ages: Option<Vec<u64>> = parts.iter().map(|c| c.max_age).collect();
    let max_age = ages.and_then(|a| a.into_iter().min());
    if let Some(age) = max_age {
        directives.push(format!("max-age={age}"));
    }
    if parts.iter().any(|c| c.s_maxage.is_some()) {
        let shared: Option<Vec<u64>> = parts.iter().map(|c| c.s_maxage.or(c.max_age)).collect();
        if let Some(age) = shared.and_then(|a| a.into_iter().min()).filter(|a| Some(*a) != max_age) {
            directives.push(format!("s-maxage={age}"));
        }
    }
    if directives.is_empty() {
        return None;
    }
    HeaderValue::try_from(directives.join(", ")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(lines: &[&str]) -> Caching {
        Caching::of(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn directives_are_read_in_any_case_over_every_line() {
        let c = of(&["Private, MAX-AGE=\"60\"", "max-age=30"]);
        assert_eq!(c, Caching { private: true, max_age: Some(30), ..Default::default() });
        assert_eq!(of(&["max-age=soon"]), Caching { no_cache: true, ..Default::default() });
        assert_eq!(of(&["max-age=+5"]), Caching { no_cache: true, ..Default::default() });
        assert_eq!(of(&["max-age=99999999999999999999999"]).max_age, Some(1 << 31));
        let c = of(&["s-maxage=5, must-revalidate, Proxy-Revalidate"]);
        assert_eq!((c.s_maxage, c.must_revalidate, c.proxy_revalidate), (Some(5), true, true));
        assert_eq!(of(&[]), Caching::default());
    }

    #[test]
    fn the_strictest_part_decides() {
        let public = |age| Caching { max_age: Some(age), ..Default::default() };
        let text = |v: Option<HeaderValue>| v.map(|v| v.to_str().unwrap().to_string());
        assert_eq!(text(merged(&[public(60), public(30)], false)).as_deref(), Some("max-age=30"));
        assert_eq!(text(merged(&[public(60), public(30)], true)).as_deref(), Some("private, max-age=30"));
        assert_eq!(text(merged(&[public(60), Caching::default()], false)), None, "one part gives no age");
        let private = Caching { private: true, no_store: true, ..Default::default() };
        assert_eq!(text(merged(&[public(60), private], false)).as_deref(), Some("no-store"));
        let revalidate = Caching { no_cache: true, max_age: Some(5), ..Default::default() };
        assert_eq!(text(merged(&[public(60), revalidate], false)).as_deref(), Some("no-cache, max-age=5"));
        assert_eq!(text(merged(&[], true)).as_deref(), Some("private"));
        // A shared cache keeps each part no longer than its `s-maxage`.
        let shared = Caching { max_age: Some(60), s_maxage: Some(5), ..Default::default() };
        assert_eq!(text(merged(&[public(60), shared], false)).as_deref(), Some("max-age=60, s-maxage=5"));
        let shared = Caching { max_age: Some(600), s_maxage: Some(900), ..Default::default() };
        assert_eq!(text(merged(&[public(600), shared], false)).as_deref(), Some("max-age=600"));
        let strict = Caching { must_revalidate: true, max_age: Some(10), ..Default::default() };
        assert_eq!(text(merged(&[public(60), strict], false)).as_deref(), Some("must-revalidate, max-age=10"));
    }
}

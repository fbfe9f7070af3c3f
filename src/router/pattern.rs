//! Path patterns: `/users/{id}`, `/static/{*rest}`, and prefixes. A pattern
//! is a list of segments plus how it ends; that one shape gives matching,
//! precedence and the overlap checks `portcullis check` runs.

use std::cmp::Ordering;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(Box<str>),
    /// `{name}`: exactly one non-empty segment.
    Param(Arc<str>),
    /// `{name}.json`, `v{major}`, `{id}:cancel`, `{base}...{head}`: one
    /// segment of literal text and non-empty parameters, two parameters
    /// never side by side (OpenAPI documents and Google-style custom
    /// methods write paths so).
    Mixed(Box<[Piece]>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Box<str>),
    Param(Arc<str>),
}

impl Segment {
    /// A mixed segment's values from `current`, pushed in order; `false`
    /// if it does not match. A parameter takes the shortest non-empty run
    /// up to the next text; before the segment's closing text, the run up
    /// to that text at the segment's end; the last one, the rest. So
    /// `7:cancel:cancel` is `{id}:cancel` with `id` = `7:cancel` (the verb
    /// after the last `:`, as gRPC-Gateway reads it), not a miss that falls
    /// to a broader route.
    ///
    /// The leftmost placement of each inner text leaves the most room for
    /// the rest, so no choice is ever undone: linear in the segment, where
    /// trying every split would be a client's to make exponential.
    fn match_mixed<'p>(pieces: &[Piece], mut current: &'p str, values: &mut Vec<&'p str>) -> bool {
        let mut i = 0;
        while i < pieces.len() {
            match &pieces[i] {
                Piece::Text(t) => match current.strip_prefix(&**t) {
                    Some(rest) => current = rest,
                    None => return false,
                },
                Piece::Param(_) => {
                    // At least one character, then up to the next text.
                    let first = current.chars().next().map_or(0, char::len_utf8);
                    if first == 0 {
                        return false;
                    }
                    let end = match pieces.get(i + 1) {
                        // The closing text: at the end.
                        Some(Piece::Text(t)) if i + 2 == pieces.len() => match current.strip_suffix(&**t) {
                            Some(value) if value.len() >= first => value.len(),
                            _ => return false,
                        },
                        Some(Piece::Text(t)) => match Self::first_valid_end(current, first, t) {
                            Some(end) => end,
                            None => return false,
                        },
                        _ => current.len(),
                    };
                    if Self::dot_segment(&current[..end]) {
                        return false;
                    }
                    values.push(&current[..end]);
                    current = &current[end..];
                }
            }
            i += 1;
        }
        current.is_empty()
    }

    /// The first occurrence of `text` at or after `from` whose run before it
    /// is a value (not a dot segment).
    fn first_valid_end(current: &str, mut from: usize, text: &str) -> Option<usize> {
        loop {
            let end = from + current[from..].find(text)?;
            if !Self::dot_segment(&current[..end]) {
                return Some(end);
            }
            // Only `.` and `..` are refused: the next occurrence is one byte on.
            from = end + 1;
        }
    }

    /// A value of `.` or `..` would become a dot segment wherever a template
    /// puts it (`/reports/...json` as `{name}.json`, rewritten to
    /// `/r/{name}/data`, reached `/r/../data`): such a value does not match.
    fn dot_segment(value: &str) -> bool {
        matches!(value, "." | "..")
    }

    /// A mixed segment's fixed start and end (`v` and `` for `v{major}`).
    fn ends(pieces: &[Piece]) -> (&str, &str) {
        fn text(p: Option<&Piece>) -> &str {
            match p {
                Some(Piece::Text(t)) => t,
                _ => "",
            }
        }
        let start = text(pieces.first());
        let end = if pieces.len() > 1 { text(pieces.last()) } else { "" };
        (start, end)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// Nothing may follow.
    Exact,
    /// `{*name}`: one or more further segments.
    CatchAll(Arc<str>),
    /// A prefix: zero or more further segments.
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    segments: Vec<Segment>,
    tail: Tail,
}

impl PathPattern {
    /// Parses a `path` (exact, templated or catch-all).
    pub fn parse_path(text: &str) -> Result<PathPattern, String> {
        let body = text.strip_prefix('/').ok_or_else(|| format!("`{text}` must start with `/`"))?;
        let parts: Vec<&str> = body.split('/').collect();
        let mut segments = Vec::new();
        let mut tail = Tail::Exact;
        for (i, part) in parts.iter().enumerate() {
            if let Some(name) = part.strip_prefix("{*").and_then(|p| p.strip_suffix('}')) {
                check_name(name, text)?;
                if i != parts.len() - 1 {
                    return Err(format!("`{text}`: a catch-all `{{*{name}}}` must be the last segment"));
                }
                tail = Tail::CatchAll(name.into());
            } else if let Some(name) =
                part.strip_prefix('{').and_then(|p| p.strip_suffix('}')).filter(|n| !n.contains(['{', '}']))
            {
                check_name(name, text)?;
                segments.push(Segment::Param(name.into()));
            } else if part.contains(['{', '}']) {
                segments.push(Segment::Mixed(mixed(part, text)?));
            } else {
                segments.push(Segment::Literal((*part).into()));
            }
        }
        let pattern = PathPattern { segments, tail };
        let names = pattern.param_names();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!("`{text}`: parameter `{n}` appears twice"));
            }
        }
        Ok(pattern)
    }

    /// Parses a `path_prefix`; a trailing `/` is ignored (prefixes match at segment boundaries).
    pub fn parse_prefix(text: &str) -> Result<PathPattern, String> {
        let trimmed = text.trim_end_matches('/');
        if !text.starts_with('/') {
            return Err(format!("`{text}` must start with `/`"));
        }
        if trimmed.contains(['{', '}']) {
            return Err(format!("`{text}`: a prefix cannot have parameters; use `path` with `{{*rest}}`"));
        }
        let segments = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed[1..].split('/').map(|s| Segment::Literal(s.into())).collect()
        };
        Ok(PathPattern { segments, tail: Tail::Prefix })
    }

    /// `prefix` (e.g. an API version `/v2`) put in front of this pattern.
    pub fn prepend(&self, prefix: &PathPattern) -> PathPattern {
        let mut segments = prefix.segments.clone();
        // `/` as a whole path is one empty segment; it adds nothing after a prefix.
        if !(self.segments == [Segment::Literal("".into())] && self.tail == Tail::Exact) {
            segments.extend(self.segments.iter().cloned());
        }
        PathPattern { segments, tail: self.tail.clone() }
    }

    pub fn param_names(&self) -> Vec<Arc<str>> {
        let mut names: Vec<Arc<str>> = self
            .segments
            .iter()
            .flat_map(|s| match s {
                Segment::Param(n) => vec![n.clone()],
                Segment::Mixed(pieces) => pieces
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Param(n) => Some(n.clone()),
                        Piece::Text(_) => None,
                    })
                    .collect(),
                Segment::Literal(_) => Vec::new(),
            })
            .collect();
        if let Tail::CatchAll(n) = &self.tail {
            names.push(n.clone());
        }
        names
    }

    /// The leading literal segments, as a path (`/v1/users` for `/v1/users/{id}`).
    pub fn literal_prefix_segments(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map_while(|s| match s {
            Segment::Literal(l) => Some(&**l),
            Segment::Param(_) | Segment::Mixed(_) => None,
        })
    }

    /// Matches a normalized path, pushing parameter values in `param_names` order.
    pub fn matches<'p>(&self, path: &'p str, values: &mut Vec<&'p str>) -> bool {
        values.clear();
        let Some(mut rest) = path.strip_prefix('/').map(Some) else {
            return false;
        };
        for segment in &self.segments {
            let Some(r) = rest else { return false };
            let (current, after) = match r.find('/') {
                Some(i) => (&r[..i], Some(&r[i + 1..])),
                None => (r, None),
            };
            match segment {
                Segment::Literal(l) if **l == *current => {}
                Segment::Param(_) if !current.is_empty() => values.push(current),
                Segment::Mixed(pieces) => {
                    if !Segment::match_mixed(pieces, current, values) {
                        return false;
                    }
                }
                _ => return false,
            }
            rest = after;
        }
        match &self.tail {
            Tail::Exact => rest.is_none(),
            Tail::Prefix => true,
            Tail::CatchAll(_) => match rest {
                Some(r) if !r.is_empty() => {
                    values.push(r);
                    true
                }
                _ => false,
            },
        }
    }

    /// Specificity, segment by segment: literal > affixed parameter
    /// (`{id}.json`) > parameter, and an exact end > catch-all > prefix.
    /// Greater is more specific.
    pub fn specificity(&self, other: &PathPattern) -> Ordering {
        fn rank(p: &PathPattern, i: usize) -> u8 {
            match p.segments.get(i) {
                Some(Segment::Literal(_)) => 5,
                Some(Segment::Mixed(_)) => 4,
                Some(Segment::Param(_)) => 3,
                None if i == p.segments.len() => match p.tail {
                    Tail::Exact => 6,
                    Tail::CatchAll(_) => 2,
                    Tail::Prefix => 1,
                },
                None => 0,
            }
        }
        let n = self.segments.len().max(other.segments.len()) + 1;
        (0..n).map(|i| rank(self, i).cmp(&rank(other, i))).find(|o| o.is_ne()).unwrap_or(Ordering::Equal)
    }

    /// Whether some path matches both patterns.
    pub fn overlaps(&self, other: &PathPattern) -> bool {
        let (a, b) = (self, other);
        let common = a.segments.len().min(b.segments.len());
        for i in 0..common {
            if !segments_overlap(&a.segments[i], &b.segments[i]) {
                return false;
            }
        }
        // Whatever is left of the longer one must fit the shorter one's tail.
        let (short, long) = if a.segments.len() <= b.segments.len() { (a, b) } else { (b, a) };
        let extra = long.segments.len() - short.segments.len();
        match (&short.tail, extra) {
            (Tail::Prefix, _) => true,
            (Tail::CatchAll(_), 0) => !matches!(long.tail, Tail::Exact),
            (Tail::CatchAll(_), _) => true,
            (Tail::Exact, 0) => matches!(long.tail, Tail::Exact | Tail::Prefix),
            (Tail::Exact, _) => false,
        }
    }

    /// Whether every path matching `other` also matches `self`.
    pub fn covers(&self, other: &PathPattern) -> bool {
        for (i, seg) in self.segments.iter().enumerate() {
            match (seg, other.segments.get(i)) {
                (Segment::Literal(x), Some(Segment::Literal(y))) if x == y => {}
                (Segment::Param(_), Some(Segment::Literal(y))) if !y.is_empty() => {}
                (Segment::Param(_), Some(Segment::Param(_) | Segment::Mixed(_))) => {}
                (Segment::Mixed(pieces), Some(Segment::Literal(y)))
                    if Segment::match_mixed(pieces, y, &mut Vec::new()) => {}
                (Segment::Mixed(a), Some(Segment::Mixed(b))) if a == b => {}
                _ => return false,
            }
        }
        let extra = other.segments.len() - self.segments.len().min(other.segments.len());
        match &self.tail {
            Tail::Prefix => true,
            Tail::CatchAll(_) => extra > 0 || matches!(other.tail, Tail::CatchAll(_)),
            Tail::Exact => extra == 0 && other.tail == Tail::Exact,
        }
    }
}

/// Whether some one segment matches both.
fn segments_overlap(a: &Segment, b: &Segment) -> bool {
    match (a, b) {
        (Segment::Literal(x), Segment::Literal(y)) => x == y,
        (Segment::Literal(l), Segment::Mixed(pieces)) | (Segment::Mixed(pieces), Segment::Literal(l)) => {
            Segment::match_mixed(pieces, l, &mut Vec::new())
        }
        (Segment::Literal(l), Segment::Param(_)) | (Segment::Param(_), Segment::Literal(l)) => !l.is_empty(),
        // Two mixed segments meet unless their fixed ends disagree.
        (Segment::Mixed(a), Segment::Mixed(b)) => {
            let ((p1, s1), (p2, s2)) = (Segment::ends(a), Segment::ends(b));
            (p1.starts_with(p2) || p2.starts_with(p1)) && (s1.ends_with(s2) || s2.ends_with(s1))
        }
        _ => true,
    }
}

/// The pieces of a segment with parameters in it (`{name}.json`).
fn mixed(part: &str, text: &str) -> Result<Box<[Piece]>, String> {
    let bad = || {
        format!(
            "`{text}`: `{part}`: parameters in a segment are `{{name}}` with text between them, like `{{id}}.json` or `{{base}}...{{head}}` (a catch-all `{{*rest}}` is a whole segment)"
        )
    };
    let mut pieces = Vec::new();
    let mut rest = part;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            Some(0) if rest.starts_with('{') => {
                let close = rest.find('}').ok_or_else(bad)?;
                let name = &rest[1..close];
                if name.contains('{') || name.starts_with('*') {
                    return Err(bad());
                }
                check_name(name, text)?;
                if matches!(pieces.last(), Some(Piece::Param(_))) {
                    return Err(bad());
                }
                pieces.push(Piece::Param(name.into()));
                rest = &rest[close + 1..];
            }
            Some(at) if rest.as_bytes()[at] == b'{' => {
                pieces.push(Piece::Text(rest[..at].into()));
                rest = &rest[at..];
            }
            Some(_) => return Err(bad()),
            None => {
                pieces.push(Piece::Text(rest.into()));
                rest = "";
            }
        }
    }
    Ok(pieces.into())
}

fn check_name(name: &str, text: &str) -> Result<(), String> {
    // OpenAPI documents name parameters `enterprise-team` or `api.version` too.
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')) {
        return Err(format!("`{text}`: parameter names are letters, digits, `_`, `-` and `.`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> PathPattern {
        PathPattern::parse_path(s).unwrap()
    }
    fn prefix(s: &str) -> PathPattern {
        PathPattern::parse_prefix(s).unwrap()
    }
    fn m<'p>(p: &PathPattern, s: &'p str) -> Option<Vec<&'p str>> {
        let mut v = Vec::new();
        p.matches(s, &mut v).then_some(v)
    }

    #[test]
    fn matching() {
        assert_eq!(m(&path("/users/{id}"), "/users/42"), Some(vec!["42"]));
        assert_eq!(m(&path("/users/{id}"), "/users/"), None);
        assert_eq!(m(&path("/users/{id}"), "/users/42/x"), None);
        assert_eq!(m(&path("/files/{*rest}"), "/files/a/b.txt"), Some(vec!["a/b.txt"]));
        assert_eq!(m(&path("/files/{*rest}"), "/files"), None);
        assert_eq!(m(&path("/"), "/"), Some(vec![]));
        assert_eq!(m(&path("/"), "/x"), None);
        assert!(m(&prefix("/api"), "/api").is_some());
        assert!(m(&prefix("/api/"), "/api/x/y").is_some());
        assert!(m(&prefix("/api"), "/apix").is_none());
        assert!(m(&prefix("/"), "/anything").is_some());
    }

    #[test]
    fn affixed_parameters_match_inside_a_segment() {
        assert_eq!(m(&path("/files/{name}.json"), "/files/a.b.json"), Some(vec!["a.b"]));
        assert_eq!(m(&path("/files/{name}.json"), "/files/.json"), None);
        assert_eq!(m(&path("/files/{name}.json"), "/files/a.xml"), None);
        assert_eq!(m(&path("/items/{id}:cancel/x"), "/items/7:cancel/x"), Some(vec!["7"]));
        assert_eq!(m(&path("/v{major}/users"), "/v2/users"), Some(vec!["2"]));
        assert_eq!(m(&path("/compare/{base}...{head}"), "/compare/main...dev"), Some(vec!["main", "dev"]));
        assert_eq!(m(&path("/compare/{base}...{head}"), "/compare/a...b...c"), Some(vec!["a", "b...c"]));
        assert_eq!(m(&path("/compare/{base}...{head}"), "/compare/...b"), None);
        assert_eq!(m(&path("/compare/{base}...{head}"), "/compare/a..."), None);
        assert_eq!(m(&path("/compare/{base}...{head}"), "/compare/é...ü"), Some(vec!["é", "ü"]));
        // The closing text is the segment's end: the verb after the last `:`
        // (gRPC-Gateway), the extension after the last `.json`.
        assert_eq!(m(&path("/jobs/{id}:cancel"), "/jobs/7:cancel:cancel"), Some(vec!["7:cancel"]));
        assert_eq!(m(&path("/jobs/{id}:cancel"), "/jobs/:cancel:cancel"), Some(vec![":cancel"]));
        assert_eq!(m(&path("/files/{name}.json"), "/files/x.json.json"), Some(vec!["x.json"]));
        assert_eq!(m(&path("/files/{name}.json"), "/files/..json"), None, "a dot-segment value");
        assert_eq!(m(&path("/v{major}.{minor}x"), "/v1.2.3x"), Some(vec!["1", "2.3"]));
        // An inner text whose first occurrence leaves a dot segment: the next.
        assert_eq!(m(&path("/d/{a}.{b}"), "/d/...x"), None);
        assert_eq!(m(&path("/d/{a}.{b}"), "/d/...x.y"), Some(vec!["...x", "y"]));
        assert_eq!(m(&path("/d/{a}-{b}"), "/d/.-.-x"), Some(vec![".-.", "x"]));
        assert_eq!(m(&path("/d/{a}:{b}:z"), "/d/a:b:c:z"), Some(vec!["a", "b:c"]));
        // Linear: a long segment of the inner text matches or misses at once.
        let long = format!("/d/{}", "-".repeat(8000));
        assert_eq!(m(&path("/d/{a}-{b}-{c}-{d}-x"), &long), None);
        use Ordering::*;
        assert_eq!(path("/f/a.json").specificity(&path("/f/{n}.json")), Greater);
        assert_eq!(path("/f/{n}.json").specificity(&path("/f/{n}")), Greater);
        assert!(path("/f/{n}.json").overlaps(&path("/f/{m}")));
        assert!(path("/f/{n}.json").overlaps(&path("/f/a.json")));
        assert!(!path("/f/{n}.json").overlaps(&path("/f/a.xml")));
        assert!(!path("/f/{n}.json").overlaps(&path("/f/{n}.xml")));
        assert!(path("/f/{n}.json").overlaps(&path("/f/{n}on")), "`x.json` ends with both");
        assert!(path("/f/{n}").covers(&path("/f/{n}.json")));
        assert!(path("/f/{n}.json").covers(&path("/f/a.json")));
        assert!(!path("/f/{n}.json").covers(&path("/f/{n}")));
    }

    proptest::proptest! {
        /// Any pattern text is parsed or refused, never a panic; a parsed one
        /// matches any path without one, and what it captures is in the path.
        #[test]
        fn patterns_and_paths_never_panic(text in "/[a-zé{}*.:/-]{0,12}", path in "/[a-zé.:/-]{0,12}") {
            if let Ok(p) = PathPattern::parse_path(&text) {
                let mut values = Vec::new();
                if p.matches(&path, &mut values) {
                    proptest::prop_assert!(values.iter().all(|v| !v.is_empty() && path.contains(*v)));
                }
                let _ = (p.overlaps(&p), p.covers(&p), p.specificity(&p));
            }
        }
    }

    #[test]
    fn specificity_order() {
        use Ordering::*;
        assert_eq!(path("/users/me").specificity(&path("/users/{id}")), Greater);
        assert_eq!(path("/users/{id}").specificity(&prefix("/users")), Greater);
        assert_eq!(prefix("/api/v1").specificity(&prefix("/api")), Greater);
        assert_eq!(path("/a/{*r}").specificity(&prefix("/a")), Greater);
        assert_eq!(path("/a/{x}").specificity(&path("/a/{y}")), Equal);
    }

    #[test]
    fn overlap_and_cover() {
        assert!(path("/a/{x}").overlaps(&path("/a/b")));
        assert!(!path("/a/c").overlaps(&path("/a/b")));
        assert!(prefix("/a").overlaps(&path("/a/b/c")));
        assert!(!path("/a").overlaps(&path("/a/{*r}")));
        assert!(prefix("/a").covers(&path("/a/{x}")));
        assert!(path("/a/{x}").covers(&path("/a/b")));
        assert!(!path("/a/b").covers(&path("/a/{x}")));
        assert!(!path("/a/{*r}").covers(&prefix("/a")));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(PathPattern::parse_path("users").is_err());
        assert!(PathPattern::parse_path("/a/{*r}/b").is_err());
        assert!(PathPattern::parse_path("/a/x{id}{b}").is_err(), "two parameters side by side");
        assert!(PathPattern::parse_path("/a/{id").is_err());
        assert!(PathPattern::parse_path("/a/id}").is_err());
        assert!(PathPattern::parse_path("/a/x{*r}").is_err());
        assert!(PathPattern::parse_path("/a/{b c}").is_err());
        assert!(PathPattern::parse_path("/teams/{enterprise-team}/{api.version}").is_ok());
        assert!(PathPattern::parse_path("/a/{id}}").is_err());
        assert!(PathPattern::parse_path("/a/{id}/{id}").is_err());
        assert!(PathPattern::parse_prefix("/a/{id}").is_err());
    }
}

//! Path normalization before routing. The classic gateway bypass is a path
//! that the gateway and the backend read differently (`/public/%2e%2e/admin`,
//! `/admin/..;/`, `/admin;x/secret`, `%2F`). We decode what is safe to
//! decode, resolve dot segments, and refuse what has no single meaning, so
//! that the path that is matched is exactly the path that is forwarded.

use std::borrow::Cow;

use crate::config::{NormalizeConfig, PathParameters};

/// Normalization as the plan compiled it from `path_normalization`: plain
/// flags, read on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub merge_slashes: bool,
    pub reject_encoded_slash: bool,
    pub reject_double_encoding: bool,
    /// `%3A`, `%40` and the sub-delimiters but `+` are decoded.
    pub decode_delimiters: bool,
    /// `;` segment parameters are removed (else refused).
    pub strip_parameters: bool,
    /// A segment that starts with `;` (OpenAPI's `matrix` style, `;id=5`)
    /// is kept as it is: set when a route reads a matrix-style path
    /// parameter. The engine then refuses the request unless the matched
    /// route captures each such segment as one of those parameters.
    pub matrix_segments: bool,
    /// A route's path template: `{` and `}` are its parameters' syntax,
    /// not characters to percent-encode (`as_requests_arrive`).
    pub template: bool,
}

impl Options {
    pub fn of(cfg: &NormalizeConfig) -> Options {
        Options {
            merge_slashes: cfg.merge_slashes,
            reject_encoded_slash: cfg.reject_encoded_slash,
            reject_double_encoding: cfg.reject_double_encoding,
            decode_delimiters: cfg.decode_delimiters,
            strip_parameters: cfg.path_parameters == PathParameters::Strip,
            matrix_segments: false,
            template: false,
        }
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::of(&NormalizeConfig::default())
    }
}

/// Why a request path was refused (each becomes a 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the request path must start with `/`")]
    NotAbsolute,
    #[error("the request path contains an invalid percent-encoding")]
    InvalidEncoding,
    #[error("the request path contains a byte outside ASCII (percent-encode it: `é` is `%C3%A9`)")]
    NotAscii,
    #[error("the request path contains an encoded `/` or `\\`")]
    EncodedSlash,
    #[error("the request path contains a backslash")]
    Backslash,
    #[error("the request path contains a NUL or control character")]
    ControlCharacter,
    #[error("the request path contains a double-encoded character")]
    DoubleEncoding,
    #[error("the request path contains a `..;` or `.;` segment")]
    DotSemicolon,
    #[error("the request path contains a `;` segment parameter")]
    SegmentParameter,
}

/// Normalizes `raw` (the path of the request-target, still percent-encoded).
/// Returns the input unchanged (borrowed) when it is already normal.
pub fn normalize<'a>(raw: &'a str, opts: &Options) -> Result<Cow<'a, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_already_normal(bytes, opts) {
        return Ok(Cow::Borrowed(raw));
    }
    let decoded = decode_unreserved(bytes, opts)?;
    Ok(Cow::Owned(resolve_segments(&decoded, opts)?))
}

/// The fast path: no escapes, no dot segments, no empty segments.
fn is_already_normal(bytes: &[u8], opts: &Options) -> bool {
    let mut prev = 0u8;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' | b'\\' | b';' | 0..=0x1f | 0x7f..=0xff => return false,
            b if must_be_encoded(b) => return false,
            // A leading `//` is merged whatever `merge_slashes` says (below).
            b'/' if prev == b'/' && (opts.merge_slashes || i == 1) => return false,
            b'.' if prev == b'/' => {
                // `/.` starts a dot segment only if followed by `/`, `.`, `;` or the end.
                match bytes.get(i + 1) {
                    None | Some(b'/') | Some(b'.') | Some(b';') => return false,
                    _ => {}
                }
            }
            _ => {}
        }
        prev = b;
    }
    true
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The delimiters a path may carry raw (RFC 3986 `pchar`) that services
/// decode before they route: a route's `{id}:cancel` or `/@admin` must
/// see `%3A` and `%40` as the service does. Not `+` (a service that reads
/// paths with a form decoder takes a raw `+` for a space, `%2B` for `+`),
/// nor `;` (segment parameters), `/`, `?`, `#` or `%`.
fn is_path_delimiter(b: u8) -> bool {
    matches!(b, b':' | b'@' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b',' | b'=')
}

/// Characters RFC 3986 never allows raw in a path (the space, `"`, `<`,
/// `>`, `^`, `` ` ``, `{`, `}`, `|`, `[`, `]`), which parsers let through
/// and services decode: percent-encoded here, as their escapes are kept,
/// so that `/a|b` and `/a%7Cb` are one path to the router (a route guarding
/// one spelling was passed by the other, which a service reads the same).
fn must_be_encoded(b: u8) -> bool {
    matches!(b, b' ' | b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'}' | b'|' | b'[' | b']')
}

/// Decodes `%XX` of unreserved characters (and path delimiters, see
/// `is_path_delimiter`), upper-cases the hex of the rest,
/// and refuses encodings that would change the path's structure.
fn decode_unreserved(bytes: &[u8], opts: &Options) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) =
                    (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex))
                else {
                    return Err(PathError::InvalidEncoding);
                };
                let v = hi << 4 | lo;
                match v {
                    0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
                    b'/' | b'\\' if opts.reject_encoded_slash => {
                        return Err(PathError::EncodedSlash);
                    }
                    v if is_unreserved(v) || opts.decode_delimiters && is_path_delimiter(v) => out.push(v as char),
                    v => {
                        out.push('%');
                        out.push(HEX[(v >> 4) as usize] as char);
                        out.push(HEX[(v & 15) as usize] as char);
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            // hyper only hands us visible ASCII; anything else is not a valid request-target.
            0x80..=0xff => return Err(PathError::NotAscii),
            b'{' | b'}' if opts.template => {
                out.push(b as char);
                i += 1;
            }
            b if must_be_encoded(b) => {
                out.push('%');
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
                i += 1;
            }
            _ => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    // `%25` followed by two hex digits, in what is forwarded: a backend that
    // decodes twice reads another byte there. Checked on the output, where
    // the digits may come from escapes decoded just now (`%25%32%65`).
    if opts.reject_double_encoding {
        let out_bytes = out.as_bytes();
        let double = memchr::memmem::find_iter(out_bytes, b"%25").any(|at| {
            out_bytes.get(at + 3).copied().and_then(hex).is_some()
                && out_bytes.get(at + 4).copied().and_then(hex).is_some()
        });
        if double {
            return Err(PathError::DoubleEncoding);
        }
    }
    Ok(out)
}

/// Resolves `.` and `..` (RFC 3986 §5.2.4; `..` above the root stays at the
/// root) and merges empty segments when configured.
fn resolve_segments(path: &str, opts: &Options) -> Result<String, PathError> {
    let mut stack: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, mut seg) in segments.into_iter().enumerate() {
        if opts.matrix_segments && seg.starts_with(';') {
            // A matrix value, whole: checked against the route once matched.
        } else if let Some(at) = seg.find(';') {
            // Java servers (and others) cut `;params` off a segment before
            // routing, so `/admin;x/secret` is `/admin/secret` to them and
            // `..;x` is `..`: refuse, or cut them off here too.
            match opts.strip_parameters {
                false if seg.starts_with("..;") || seg.starts_with(".;") => {
                    return Err(PathError::DotSemicolon);
                }
                false => return Err(PathError::SegmentParameter),
                true => seg = &seg[..at],
            }
        }
        let is_last = i == last;
        match seg {
            "." => trailing_slash = is_last,
            ".." => {
                stack.pop();
                trailing_slash = is_last;
            }
            "" if is_last => trailing_slash = true,
            // With `merge_slashes: false` too, no path begins with `//`:
            // URL parsers (Node's `new URL(path, base)`) read
            // `//evil.example/admin` as a host and the path `/admin`, one
            // the gateway did not route.
            "" if opts.merge_slashes || stack.is_empty() => {}
            _ => {
                stack.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for seg in &stack {
        out.push('/');
        out.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

/// Whether every segment of `path` that starts with `;` is the value of
/// one of the route's matrix-style parameters (`matrix`: their indices in
/// `values`, the router's captures): a matrix segment anywhere else is a
/// segment parameter like any other.
/// `values` are slices of `path`: a segment is captured where it lies,
/// not wherever its text is equal (`/users/;id=5/orders/;id=5` put the
/// second, an `{oid}`'s, past the check).
pub fn matrix_segments_captured(path: &str, matrix: &[usize], values: &[&str]) -> bool {
    path.split('/').filter(|seg| seg.starts_with(';')).all(|seg| {
        matrix.iter().any(|&i| values.get(i).is_some_and(|v| v.as_ptr() == seg.as_ptr() && v.len() == seg.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_segments_are_kept_whole_only_when_routes_read_them() {
        let matrix = Options { matrix_segments: true, ..Options::default() };
        let norm_m = |p: &str| normalize(p, &matrix).map(Cow::into_owned);
        assert_eq!(norm_m("/users/;id=5"), Ok("/users/;id=5".into()));
        assert_eq!(norm_m("/users/;id=1;id=2/orders"), Ok("/users/;id=1;id=2/orders".into()));
        assert_eq!(norm_m("/a/../users/;id=5"), Ok("/users/;id=5".into()));
        // Anything else with a `;` is what it was.
        assert_eq!(norm_m("/admin;x/secret"), Err(PathError::SegmentParameter));
        assert_eq!(norm_m("/x/..;/admin"), Err(PathError::DotSemicolon));
        assert_eq!(norm("/users/;id=5"), Err(PathError::SegmentParameter));
        // Captured as a matrix parameter, or refused.
        let p = "/users/;id=5";
        assert!(matrix_segments_captured(p, &[0], &[&p[7..]]));
        assert!(!matrix_segments_captured(p, &[], &[&p[7..]]));
        let p = "/users/;id=5/;x=1";
        assert!(!matrix_segments_captured(p, &[0], &[&p[7..12]]));
        assert!(matrix_segments_captured("/users/5", &[], &[]));
        // The same text elsewhere (an `{oid}`'s segment) is not captured.
        let p = "/users/;id=5/orders/;id=5";
        assert!(!matrix_segments_captured(p, &[0], &[&p[7..12], &p[20..]]));
        assert!(matrix_segments_captured(p, &[0, 1], &[&p[7..12], &p[20..]]));
    }

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p, &Options::default()).map(Cow::into_owned)
    }

    #[test]
    fn characters_never_raw_in_a_path_are_one_spelling_with_their_escapes() {
        for (raw, encoded) in [("/a|b", "/a%7Cb"), ("/[x]", "/%5Bx%5D"), ("/a^b\"{}`<>", "/a%5Eb%22%7B%7D%60%3C%3E")] {
            assert_eq!(norm(raw).as_deref(), Ok(encoded), "{raw}");
            assert_eq!(norm(encoded).as_deref(), Ok(encoded), "{encoded}");
            assert_eq!(
                norm(&encoded.to_ascii_lowercase()).map(|p| p.to_ascii_lowercase()),
                Ok(encoded.to_ascii_lowercase())
            );
        }
        assert_eq!(norm("/a%7cb").as_deref(), Ok("/a%7Cb"));
        // A route's template keeps its parameters' braces.
        let template = Options { template: true, ..Options::default() };
        assert_eq!(normalize("/r/{id}/a|b", &template).as_deref(), Ok("/r/{id}/a%7Cb"));
    }

    #[test]
    fn leaves_normal_paths_alone() {
        assert!(matches!(normalize("/a/b.json", &Options::default()), Ok(Cow::Borrowed(_))));
        assert_eq!(norm("/").unwrap(), "/");
        assert_eq!(norm("/users/42/").unwrap(), "/users/42/");
        assert_eq!(norm("/.well-known/x").unwrap(), "/.well-known/x");
    }

    #[test]
    fn resolves_dot_segments() {
        assert_eq!(norm("/admin/../public").unwrap(), "/public");
        assert_eq!(norm("/public/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/public/%2E%2E/%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/a/./b/.").unwrap(), "/a/b/");
        assert_eq!(norm("/a/b/..").unwrap(), "/a/");
        assert_eq!(norm("/../../etc/passwd").unwrap(), "/etc/passwd");
        assert_eq!(norm("/..").unwrap(), "/");
    }

    #[test]
    fn merges_slashes_when_asked() {
        assert_eq!(norm("//a///b").unwrap(), "/a/b");
        let keep = Options { merge_slashes: false, ..Default::default() };
        assert_eq!(normalize("/a///b//", &keep).unwrap(), "/a///b//");
        // A leading run is one slash anyway: `//host/x` is an authority to URL parsers.
        assert_eq!(normalize("//a///b", &keep).unwrap(), "/a///b");
        assert_eq!(normalize("///evil.example/admin", &keep).unwrap(), "/evil.example/admin");
        assert_eq!(normalize("/.//evil.example/x", &keep).unwrap(), "/evil.example/x");
        assert_eq!(normalize("/a/..//evil.example/x", &keep).unwrap(), "/evil.example/x");
    }

    #[test]
    fn decodes_only_unreserved_and_path_delimiters() {
        assert_eq!(norm("/%41%7e%2d").unwrap(), "/A~-");
        assert_eq!(norm("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(norm("/a%20b").unwrap(), "/a%20b");
        // What services decode before routing: `{id}:cancel`, `/@admin`.
        assert_eq!(norm("/jobs/7%3Acancel").unwrap(), "/jobs/7:cancel");
        assert_eq!(norm("/%40admin/%21%24%26%27%28%29%2a%2C%3d").unwrap(), "/@admin/!$&'()*,=");
        // Not `+`, `;`, `?`, `#`, `%`, `"`: data, or structure.
        assert_eq!(norm("/a%2Bb%3Bc%3Fd%23e%22").unwrap(), "/a%2Bb%3Bc%3Fd%23e%22");
        let keep = Options { decode_delimiters: false, ..Default::default() };
        assert_eq!(normalize("/jobs/7%3acancel", &keep).unwrap(), "/jobs/7%3Acancel");
    }

    #[test]
    fn rejects_ambiguous_paths() {
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a%2fb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a%5Cb"), Err(PathError::EncodedSlash));
        assert_eq!(norm("/a\\b"), Err(PathError::Backslash));
        assert_eq!(norm("/a%00b"), Err(PathError::ControlCharacter));
        assert_eq!(norm("/a%zz"), Err(PathError::InvalidEncoding));
        assert_eq!(norm("/a%2"), Err(PathError::InvalidEncoding));
        assert_eq!(norm("/caf\u{e9}"), Err(PathError::NotAscii));
        assert_eq!(norm("/public/%252e%252e/admin"), Err(PathError::DoubleEncoding));
        assert_eq!(norm("/public/%25%32%65%25%32%65/admin"), Err(PathError::DoubleEncoding));
        assert_eq!(norm("/a%25%41b"), Err(PathError::DoubleEncoding));
        assert_eq!(norm("/a%25zz").unwrap(), "/a%25zz");
        assert_eq!(norm("/public/..;/admin"), Err(PathError::DotSemicolon));
        assert_eq!(norm("*"), Err(PathError::NotAbsolute));
        assert_eq!(norm("/admin;x/secret"), Err(PathError::SegmentParameter));
        assert_eq!(norm("/admin;jsessionid=1"), Err(PathError::SegmentParameter));
        assert_eq!(norm("/admin/;/x"), Err(PathError::SegmentParameter));
        assert_eq!(norm("/a%3Bb").unwrap(), "/a%3Bb", "an encoded `;` is data, not a delimiter");
    }

    #[test]
    fn segment_parameters_can_be_stripped() {
        let strip = Options { strip_parameters: true, ..Default::default() };
        let n = |p: &str| normalize(p, &strip).map(Cow::into_owned);
        assert_eq!(n("/admin;x/secret").unwrap(), "/admin/secret");
        assert_eq!(n("/admin;jsessionid=1").unwrap(), "/admin");
        assert_eq!(n("/public/..;x/admin").unwrap(), "/admin");
        assert_eq!(n("/a;x;y/b;/c").unwrap(), "/a/b/c");
        assert_eq!(n("/;x").unwrap(), "/");
    }

    #[test]
    fn encoded_slash_can_be_kept() {
        let keep = Options { reject_encoded_slash: false, ..Default::default() };
        assert_eq!(normalize("/a%2fb", &keep).unwrap(), "/a%2Fb");
    }

    /// Any path: no panic; a normalized path is normal (normalizing it
    /// again changes nothing) and holds no dot segment or `;` parameter.
    #[test]
    fn fuzz_paths() {
        use proptest::prelude::*;
        let piece = prop::sample::select(vec![
            "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "%25", "%41", "%", "%zz", ";", ";x", "a", "b", "\\",
            "%c3%a9", "~", "%00", "?",
        ]);
        let strip = Options { strip_parameters: true, ..Default::default() };
        let keep = Options {
            merge_slashes: false,
            reject_encoded_slash: false,
            reject_double_encoding: false,
            ..Default::default()
        };
        let opts = prop::sample::select(vec![Options::default(), strip, keep]);
        let paths = (prop::collection::vec(piece, 0..16), opts);
        crate::fuzz::run("paths", paths, |(pieces, opts)| {
            let path = format!("/{}", pieces.concat());
            let Ok(normal) = normalize(&path, &opts) else { return Ok(()) };
            let again = normalize(&normal, &opts).map_err(|e| TestCaseError::fail(format!("{normal}: {e}")))?;
            prop_assert_eq!(&again, &normal);
            prop_assert!(normal.starts_with('/'));
            prop_assert!(!normal.starts_with("//"), "{}", normal);
            for segment in normal.split('/') {
                prop_assert!(segment != "." && segment != "..", "{}", normal);
                prop_assert!(!segment.contains(';'), "{}", normal);
            }
            Ok(())
        });
    }
}

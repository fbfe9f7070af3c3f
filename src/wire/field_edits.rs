//! Edits to a response's header fields that both writers make the same
//! way: hyper's (and every writer of a map) through `apply`, the own
//! HTTP/1.1 codec line by line through `passing` and the rendered lines,
//! without building a map. Policies compile their response headers into
//! this one value and never see raw lines.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::field;
use super::limit_fields::{self, Field, LimitFields};
use super::names::{LengthMask, X_REQUEST_ID};

#[derive(Debug, Clone, Default)]
pub struct FieldEdits {
    /// Added when the response has no such header.
    defaults: Vec<(HeaderName, HeaderValue)>,
    /// Always set.
    forced: Vec<(HeaderName, HeaderValue)>,
    /// Always added, beside what the response has: `Vary` (a `set` value
    /// must not take away the fields the answer already varies on, CORS's
    /// `Origin`, the service's `Accept-Encoding`).
    added: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
    /// For writers that stream lines (`passing`, `*_lines`), made once here:
    /// the lengths of every name above, and the lines to add, rendered.
    touched: LengthMask,
    default_lines: Vec<u8>,
    forced_lines: Vec<u8>,
    added_lines: Vec<u8>,
    /// `passing` of each rate-limit field (`limit_fields::ALL`), made once:
    /// a limited response asks on every response.
    limit_passing: [Passing; 5],
}

/// What becomes of an upstream's header line (see `FieldEdits::passing`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Passing {
    /// Removed, or replaced by a `set` value.
    Dropped,
    #[default]
    Kept,
    /// Kept, and it stands in for the default at this index.
    KeptForDefault(usize),
}

impl FieldEdits {
    /// Edits that add each of `defaults` where the response has no such
    /// header, set each of `forced`, and remove every `remove`d name.
    pub fn new(
        mut defaults: Vec<(HeaderName, HeaderValue)>,
        forced: Vec<(HeaderName, HeaderValue)>,
        remove: Vec<HeaderName>,
    ) -> FieldEdits {
        let (added, forced): (Vec<_>, Vec<_>) = forced.into_iter().partition(|(n, _)| n == http::header::VARY);
        // A default that a forced value replaces anyway is dropped: the
        // outcome of `apply` is the same, and a writer that streams lines
        // (`passing`) need not know about the overlap.
        defaults.retain(|(n, _)| !forced.iter().any(|(f, _)| f == n));
        let touched = LengthMask::of(defaults.iter().chain(&forced).map(|(n, _)| n).chain(&remove));
        let default_lines = render(&defaults);
        let forced_lines = render(&forced);
        let added_lines = render(&added);
        let mut edits = FieldEdits {
            defaults,
            forced,
            added,
            remove,
            touched,
            default_lines,
            forced_lines,
            added_lines,
            ..Default::default()
        };
        edits.limit_passing = limit_fields::ALL.map(|(name, _)| edits.passing(name));
        edits
    }

    /// For writers that stream an upstream's header lines instead of
    /// editing a map (the same outcome as `apply`): what becomes of a line
    /// named `name`. Most names are none of ours, which the length mask
    /// tells without a comparison.
    #[inline]
    pub fn passing(&self, name: &HeaderName) -> Passing {
        if !self.touched.may_contain(name) {
            return Passing::Kept;
        }
        if self.remove.contains(name) || self.forced.iter().any(|(n, _)| n == name) {
            return Passing::Dropped;
        }
        match self.defaults.iter().position(|(n, _)| n == name) {
            Some(i) => Passing::KeptForDefault(i),
            None => Passing::Kept,
        }
    }

    /// Every default, as header lines: what a streaming writer adds when
    /// the upstream had none of them.
    pub fn default_lines(&self) -> &[u8] {
        &self.default_lines
    }

    /// The `set` values, as header lines (`Vary` among them: added to).
    pub fn forced_lines(&self) -> (&[u8], &[u8]) {
        (&self.forced_lines, &self.added_lines)
    }

    /// Added when the response has no such header (`apply`'s first pass).
    pub fn defaults(&self) -> &[(HeaderName, HeaderValue)] {
        &self.defaults
    }

    /// Only the removals (a `101`'s: nothing is added to a handshake,
    /// but what hides the upstream's software goes from it too).
    pub fn remove_only(&self, headers: &mut HeaderMap) {
        super::remove::remove_all(headers, &self.remove);
    }

    pub fn apply(&self, headers: &mut HeaderMap) {
        super::remove::remove_all(headers, &self.remove);
        for (name, value) in &self.defaults {
            // An upstream's empty `X-Frame-Options:` protects nothing
            // (browsers ignore it) and must not stand in for the default:
            // empty values go, as the line writer drops their lines.
            if headers.get_all(name).iter().any(|v| blank(v.as_bytes())) {
                let kept: Vec<HeaderValue> =
                    headers.get_all(name).iter().filter(|v| !blank(v.as_bytes())).cloned().collect();
                headers.remove(name);
                for v in kept {
                    headers.append(name.clone(), v);
                }
            }
            headers.entry(name).or_insert_with(|| value.clone());
        }
        for (name, value) in &self.forced {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.added {
            headers.append(name.clone(), value.clone());
        }
    }
}

fn blank(value: &[u8]) -> bool {
    value.iter().all(|b| matches!(b, b' ' | b'\t'))
}

/// Whether a raw header line (`Name: value`) has an empty value.
pub fn empty_value(line: &[u8]) -> bool {
    line.iter().position(|&b| b == b':').is_some_and(|colon| blank(&line[colon + 1..]))
}

fn render(fields: &[(HeaderName, HeaderValue)]) -> Vec<u8> {
    let mut lines = Vec::new();
    for (name, value) in fields {
        field::write(&mut lines, name.as_str().as_bytes(), value.as_bytes());
    }
    lines
}

/// Response edits left for the writer of a response whose upstream header
/// lines are still raw: fields set for this response only (the rate-limit
/// headers), then the route's field edits, then the request id. `apply`
/// does the same to a map (for every other writer).
#[derive(Debug, Clone)]
pub struct ResponseEdits {
    /// Set first, replacing the upstream's lines of the same names.
    pub limits: Option<LimitFields>,
    pub fields: Arc<FieldEdits>,
    pub request_id: Option<HeaderValue>,
}

impl ResponseEdits {
    /// Exactly what the engine would have done to the map.
    pub fn apply(self, headers: &mut HeaderMap) {
        if let Some(limits) = &self.limits {
            limits.insert_into(headers);
        }
        self.fields.apply(headers);
        if let Some(id) = self.request_id {
            headers.insert(X_REQUEST_ID, id);
        }
    }

    /// What becomes of a raw line named `name` (see `FieldEdits::passing`).
    #[inline]
    pub fn passing(&self, name: &HeaderName) -> Passing {
        if self.request_id.is_some() && name == X_REQUEST_ID {
            return Passing::Dropped;
        }
        if let Some(limits) = &self.limits
            && limits.sets(name)
        {
            return Passing::Dropped;
        }
        self.fields.passing(name)
    }

    /// What becomes of one of the `limits` fields, once the route's field
    /// edits apply to it.
    pub fn passing_limit(&self, field: Field) -> Passing {
        self.fields.limit_passing[field as usize]
    }
}

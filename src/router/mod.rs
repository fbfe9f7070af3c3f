//! The route table: matching a request to one route, deterministically.
//!
//! Precedence, most specific first (and documented in `docs/routing.md`):
//! 1. host: exact > wildcard (longer suffix first) > any;
//! 2. path, segment by segment: literal > `{param}`; then exact end >
//!    `{*catch_all}` > prefix (so a longer prefix wins);
//! 3. more conditions (listeners, methods, headers, version) > fewer;
//! 4. fewer listeners > more listeners;
//! 5. fewer methods > more methods.
//!
//! Two routes that tie on all of these and can match the same request are
//! ambiguous, and a route that an earlier one always takes is unreachable:
//! both are config errors (see [`Router::conflicts`]).

pub mod host;
mod index;
pub mod pattern;
pub mod rewrite;
pub mod version;

use std::cmp::Ordering;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

pub use host::HostMatch;
pub use pattern::PathPattern;
pub use version::{VersionMatch, VersionSource};

/// A header condition: present (any value) or equal to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderCondition {
    pub name: HeaderName,
    pub value: Option<HeaderValue>,
}

/// Everything a route requires of a request.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub host: HostMatch,
    pub path: PathPattern,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    pub headers: Vec<HeaderCondition>,
    pub version: Option<VersionMatch>,
    /// The listeners (by name) whose requests the route takes; `None`: every
    /// listener's. Elsewhere the route does not exist: a 404, and no `Allow`.
    pub listeners: Option<Vec<Arc<str>>>,
    /// Names of the path's parameters, in capture order.
    pub params: Vec<Arc<str>>,
}

impl Matcher {
    fn condition_count(&self) -> usize {
        usize::from(self.listeners.is_some())
            + usize::from(self.methods.is_some())
            + self.headers.len()
            + usize::from(self.version.is_some())
    }

    /// Whether the route takes requests of this listener.
    fn takes_listener(&self, listener: &str) -> bool {
        self.listeners.as_ref().is_none_or(|ls| ls.iter().any(|l| &**l == listener))
    }

    /// Greater is more specific; `Equal` means a tie.
    fn precedence(&self, other: &Matcher) -> Ordering {
        let methods = |m: &Matcher| m.methods.as_ref().map_or(usize::MAX, Vec::len);
        self.precedence_but_methods(other).then_with(|| methods(other).cmp(&methods(self)))
    }

    /// Precedence by host, path and the number of conditions, not by how
    /// many methods are listed (a GET route taking HEAD for its GET must
    /// not outrank a route as specific that lists HEAD itself).
    fn precedence_but_methods(&self, other: &Matcher) -> Ordering {
        let listeners = |m: &Matcher| m.listeners.as_ref().map_or(usize::MAX, Vec::len);
        self.host
            .specificity(&other.host)
            .then_with(|| self.path.specificity(&other.path))
            .then_with(|| self.condition_count().cmp(&other.condition_count()))
            .then_with(|| listeners(other).cmp(&listeners(self)))
    }

    /// The header and version conditions. Every line of a header must carry
    /// the value; one that carries it beside another value (on another
    /// line, or as an item of a comma-separated list) is ambiguous, when
    /// every other condition is met (else the route would not take the
    /// request anyway).
    fn conditions(&self, headers: &HeaderMap) -> Conditions {
        if self.headers.is_empty() && self.version.is_none() {
            return Conditions::Met;
        }
        let mut ambiguous = None;
        for c in &self.headers {
            let Some(v) = &c.value else {
                if !headers.contains_key(&c.name) {
                    return Conditions::NotMet;
                }
                continue;
            };
            let lines = headers.get_all(&c.name);
            let (mut all, mut any) = (lines.iter().next().is_some(), false);
            for line in lines {
                let (exact, named) = carries(line.as_bytes(), v.as_bytes());
                all &= exact;
                any |= named;
            }
            if !all {
                if !any {
                    return Conditions::NotMet;
                }
                ambiguous.get_or_insert_with(|| c.name.clone());
            }
        }
        match self.version.as_ref().map(|v| (v, v.decide(headers))) {
            Some((_, Some(false))) => Conditions::NotMet,
            Some((v, None)) => Conditions::Ambiguous(ambiguous.unwrap_or_else(|| v.header_name())),
            _ => ambiguous.map_or(Conditions::Met, Conditions::Ambiguous),
        }
    }

    /// Whether one request could match both.
    fn overlaps(&self, other: &Matcher) -> bool {
        let methods = match (&self.methods, &other.methods) {
            (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
            _ => true,
        };
        let headers = self.headers.iter().all(|a| {
            other
                .headers
                .iter()
                .all(|b| a.name != b.name || a.value.is_none() || b.value.is_none() || a.value == b.value)
        });
        let version = match (&self.version, &other.version) {
            (Some(a), Some(b)) => a.overlaps(b),
            _ => true,
        };
        let listeners = match (&self.listeners, &other.listeners) {
            (Some(a), Some(b)) => a.iter().any(|l| b.contains(l)),
            _ => true,
        };
        methods && headers && version && listeners && self.host.overlaps(&other.host) && self.path.overlaps(&other.path)
    }

    /// Whether every request matching `other` also matches `self`.
    fn covers(&self, other: &Matcher) -> bool {
        let methods = match (&self.methods, &other.methods) {
            (None, _) => true,
            (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
            (Some(_), None) => false,
        };
        let headers = self
            .headers
            .iter()
            .all(|a| other.headers.iter().any(|b| a.name == b.name && (a.value.is_none() || a.value == b.value)));
        let version = match (&self.version, &other.version) {
            (None, _) => true,
            (Some(a), Some(b)) => a.covers(b),
            (Some(_), None) => false,
        };
        let listeners = match (&self.listeners, &other.listeners) {
            (None, _) => true,
            (Some(a), Some(b)) => b.iter().all(|l| a.contains(l)),
            (Some(_), None) => false,
        };
        methods && headers && version && listeners && self.host.covers(&other.host) && self.path.covers(&other.path)
    }
}

/// A conflict between two routes (indexes into the config's route list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    Ambiguous { first: usize, second: usize },
    Unreachable { route: usize, shadowed_by: usize },
}

/// The request as routing sees it.
pub struct RequestView<'a, 'p> {
    /// The name of the listener the request arrived on.
    pub listener: &'a str,
    pub host: Option<&'a str>,
    /// The normalized path; captured values borrow from it.
    pub path: &'p str,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// A successful match: the route (index in config order) and its parameter values.
#[derive(Debug)]
pub struct Found<'p> {
    pub route: usize,
    pub values: Vec<&'p str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Miss {
    NotFound,
    /// The path matched, the method did not: these methods would have.
    MethodNotAllowed(Vec<Method>),
    /// A route would take the request but for this header, which carries
    /// its value and another (`X-Beta: on` and `X-Beta: off`, `Accept-Version:
    /// 1, 2`): the gateway would route by one and the service might read
    /// the other. Refused rather than left to a broader route, whose
    /// service may read the value this route was for.
    Ambiguous(HeaderName),
}

/// Whether a header line is the value `v` (itself, or only items equal to
/// it: `canary,`) and whether it names `v` at all (as the line or as one
/// of its comma-separated items, spaces aside, `v` itself may hold commas).
fn carries(line: &[u8], v: &[u8]) -> (bool, bool) {
    if line == v {
        return (true, true);
    }
    let mut items = line.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|i| !i.is_empty()).peekable();
    if items.peek().is_some() && items.all(|i| i == v) {
        return (true, true);
    }
    let named = memchr::memmem::find_iter(line, v).any(|at| {
        let before = line[..at].trim_ascii_end();
        let after = line[at + v.len()..].trim_ascii_start();
        (before.is_empty() || before.ends_with(b",")) && (after.is_empty() || after.starts_with(b","))
    });
    (false, named)
}

/// How a route's header and version conditions meet a request.
enum Conditions {
    Met,
    NotMet,
    Ambiguous(HeaderName),
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    /// (config index, matcher), most specific first.
    ordered: Vec<(usize, Matcher)>,
    /// Positions in `ordered` by leading literal path segments.
    index: index::Index,
}

impl Router {
    pub fn new(matchers: Vec<Matcher>) -> Router {
        let mut ordered: Vec<(usize, Matcher)> = matchers.into_iter().enumerate().collect();
        // Stable sort: ties keep config order (ties are checked to be disjoint).
        ordered.sort_by(|(_, a), (_, b)| b.precedence(a));
        let index = index::Index::new(ordered.iter().map(|(_, m)| m.path.literal_prefix_segments()));
        Router { ordered, index }
    }

    /// Ambiguous and unreachable routes, in precedence order of the pair.
    pub fn conflicts(&self) -> Vec<Conflict> {
        // Only routes that can match one path can conflict: the index's pairs.
        let mut out = Vec::new();
        self.index.pairs(|earlier, later| {
            if let Some(conflict) = self.conflict_between(earlier, later) {
                out.push(((earlier, later), conflict));
            }
        });
        out.sort_by_key(|(pair, _)| *pair);
        out.into_iter().map(|(_, conflict)| conflict).collect()
    }

    /// The conflict between the routes at two positions of the precedence order, if any.
    fn conflict_between(&self, earlier: usize, later: usize) -> Option<Conflict> {
        let ((i, a), (j, b)) = (&self.ordered[earlier], &self.ordered[later]);
        if a.precedence(b) == Ordering::Equal && a.overlaps(b) {
            Some(Conflict::Ambiguous { first: *i.min(j), second: *i.max(j) })
        } else if a.covers(b) {
            // By construction a route that covers another is never more
            // specific than it, so this only fires on a tie that does not
            // overlap; it guards the precedence rules as they grow.
            Some(Conflict::Unreachable { route: *j, shadowed_by: *i })
        } else {
            None
        }
    }

    /// The routes a CORS preflight's real request could be taken by, in
    /// precedence order: every route that takes its host, path and method,
    /// whatever its header and version conditions (the real request's
    /// header values are the page's to choose, and a preflight carries none
    /// of them: `Api-Version`, `Accept`, `Content-Type`, `Cookie`…), up to
    /// and including the first without such conditions, which takes every
    /// request the ones before it leave. The preflight is for all of them:
    /// a grant from one would let the real request, with other values,
    /// reach the next. For `HEAD`, GET routes count too, and the list goes
    /// on past one that takes the HEAD as a GET only to routes as specific
    /// that list `HEAD` (which `find_among` would prefer). Empty: no route
    /// takes it.
    pub fn preflight_routes(&self, req: &RequestView<'_, '_>) -> Vec<usize> {
        let mut values = Vec::new();
        let mut routes = Vec::new();
        let head = *req.method == Method::HEAD;
        // A route taking a HEAD as a GET, as in `find_among`: only a route
        // as specific that lists HEAD itself may come after it.
        let mut as_get: Option<&Matcher> = None;
        for (index, m) in self.index.candidates(req.path).map(|position| &self.ordered[position]) {
            values.clear();
            let lists = |method: &Method| m.methods.as_ref().is_none_or(|ms| ms.contains(method));
            if let Some(by) = as_get
                && (by.precedence_but_methods(m) == Ordering::Greater
                    || !m.methods.as_ref().is_some_and(|ms| ms.contains(&Method::HEAD)))
            {
                break;
            }
            if !((lists(req.method) || head && lists(&Method::GET))
                && m.takes_listener(req.listener)
                && m.host.matches(req.host)
                && m.path.matches(req.path, &mut values))
            {
                continue;
            }
            routes.push(*index);
            if m.headers.is_empty() && m.version.is_none() {
                if !head || lists(&Method::HEAD) {
                    break;
                }
                as_get.get_or_insert(m);
            }
        }
        routes
    }

    pub fn find<'p>(&self, req: &RequestView<'_, 'p>) -> Result<Found<'p>, Miss> {
        self.find_among(self.index.candidates(req.path), req)
    }

    /// The first of `candidates` (positions in precedence order, ascending)
    /// that matches, or why none does.
    fn find_among<'p>(
        &self,
        candidates: impl Iterator<Item = usize>,
        req: &RequestView<'_, 'p>,
    ) -> Result<Found<'p>, Miss> {
        let mut values = Vec::new();
        let mut allowed: Vec<Method> = Vec::new();
        // RFC 9110 §9.3.2: HEAD is GET without the content (a general-purpose
        // server supports both, §9.1). A route that takes GET but not HEAD
        // takes HEAD too, in its own place in the precedence: a route that
        // takes any method (a public catch-all, or one as specific by its
        // other conditions) must not take the HEAD of an authenticated GET
        // route, whose service would run its GET handler for it. Only a route
        // as specific that lists HEAD itself goes first.
        let head = *req.method == Method::HEAD;
        let mut as_get: Option<(usize, Vec<&'p str>, &Matcher)> = None;
        for (index, m) in candidates.map(|position| &self.ordered[position]) {
            if let Some((route, values, by)) = &as_get {
                let lists_head = m.methods.as_ref().is_some_and(|ms| ms.contains(&Method::HEAD));
                if by.precedence_but_methods(m) == Ordering::Greater || !lists_head {
                    return Ok(Found { route: *route, values: values.clone() });
                }
            }
            if !(m.takes_listener(req.listener) && m.host.matches(req.host) && m.path.matches(req.path, &mut values)) {
                continue;
            }
            match m.conditions(req.headers) {
                Conditions::Met => {}
                Conditions::NotMet => continue,
                Conditions::Ambiguous(name) => {
                    let takes = |method: &Method| m.methods.as_ref().is_none_or(|ms| ms.contains(method));
                    if takes(req.method) || head && takes(&Method::GET) {
                        return Err(Miss::Ambiguous(name));
                    }
                    continue;
                }
            }
            match &m.methods {
                Some(methods) if !methods.contains(req.method) => {
                    if head && as_get.is_none() && methods.contains(&Method::GET) {
                        as_get = Some((*index, values.clone(), m));
                    }
                    for method in methods {
                        if !allowed.contains(method) {
                            allowed.push(method.clone());
                        }
                    }
                }
                _ => {
                    return Ok(Found { route: *index, values });
                }
            }
        }
        if let Some((route, values, _)) = as_get {
            return Ok(Found { route, values });
        }
        if allowed.contains(&Method::GET) && !allowed.contains(&Method::HEAD) {
            let after_get = allowed.iter().position(|m| *m == Method::GET).map_or(allowed.len(), |i| i + 1);
            allowed.insert(after_get, Method::HEAD);
        }
        if allowed.is_empty() { Err(Miss::NotFound) } else { Err(Miss::MethodNotAllowed(allowed)) }
    }
}

#[cfg(test)]
mod tests;

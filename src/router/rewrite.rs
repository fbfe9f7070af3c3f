//! Rewrites of the forwarded path (strip or replace a prefix, or build a new
//! path from captured parameters), and the `{param}` templates they and
//! redirects use.

use std::borrow::Cow;
use std::sync::Arc;

/// A string with `{name}` holes filled from route captures.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(Box<str>),
    /// Index into the route's parameter names.
    Param(usize),
}

impl Template {
    /// Parses `text`; every `{name}` (or `{*name}`) must be one of `names`.
    pub fn parse(text: &str, names: &[Arc<str>]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].into()));
            }
            let close = rest[open..].find('}').ok_or_else(|| format!("`{text}`: unclosed `{{`"))? + open;
            let name = rest[open + 1..close].trim_start_matches('*');
            let idx = names
                .iter()
                .position(|n| &**n == name)
                .ok_or_else(|| format!("`{text}`: `{{{name}}}` is not a parameter of this route's path"))?;
            parts.push(Part::Param(idx));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("`{text}`: unmatched `}}`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.into()));
        }
        Ok(Template { parts })
    }

    /// The template with the captures put in. Past a `?` (a redirect's
    /// query), a capture's `&`, `=`, `+`, `;` and `#` are escaped: a path
    /// segment `a%26safe%3D0`, decoded by normalization to `a&safe=0`,
    /// must stay one query value, not add `safe=0` to the target.
    pub fn render(&self, values: &[&str]) -> String {
        let mut out = String::new();
        let mut in_query = false;
        for part in &self.parts {
            match part {
                Part::Literal(l) => {
                    in_query |= l.contains(['?', '#']);
                    out.push_str(l);
                }
                Part::Param(i) => {
                    let value = values.get(*i).copied().unwrap_or_default();
                    if in_query {
                        for c in value.chars() {
                            match c {
                                '&' | '=' | '+' | ';' | '#' => out.push_str(&format!("%{:02X}", c as u32)),
                                c => out.push(c),
                            }
                        }
                    } else {
                        out.push_str(value);
                    }
                }
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub enum PathRewrite {
    /// `/v1/users/1` with `/v1` becomes `/users/1`.
    StripPrefix(Box<str>),
    ReplacePrefix {
        from: Box<str>,
        to: Box<str>,
    },
    Template(Template),
}

impl PathRewrite {
    /// Applies the rewrite to a matched, normalized path. The route's match
    /// guarantees that the prefix is there (checked when the config compiles).
    ///
    /// A result that begins with `//` (`/svc//evil.example/x` stripped of
    /// `/svc` with `merge_slashes: false`, or a template's empty capture)
    /// begins with one slash: URL parsers (Node's `new URL(path, base)`,
    /// browsers) read `//evil.example/x` as a host and a path `/x` the
    /// gateway never routed.
    pub fn apply<'p>(&self, path: &'p str, values: &[&str]) -> Cow<'p, str> {
        let mut out = match self {
            PathRewrite::StripPrefix(prefix) => replace_prefix(path, prefix, ""),
            PathRewrite::ReplacePrefix { from, to } => replace_prefix(path, from, to),
            PathRewrite::Template(t) => t.render(values),
        };
        one_leading_slash(&mut out);
        Cow::Owned(out)
    }
}

/// Cuts a leading run of slashes to one: URL parsers (Node's
/// `new URL(path, base)`, browsers) read `//evil.example/x` as a host and
/// the path `/x`, which the gateway never routed. For every path the
/// gateway builds (rewrites, aggregate calls).
pub fn one_leading_slash(path: &mut String) {
    if path.starts_with("//") {
        let slashes = path.len() - path.trim_start_matches('/').len();
        path.replace_range(..slashes - 1, "");
    }
}

/// `from` is a segment-aligned prefix such as `/v1` (no trailing slash).
fn replace_prefix(path: &str, from: &str, to: &str) -> String {
    let rest = path.strip_prefix(from).unwrap_or(path);
    let to = to.trim_end_matches('/');
    match (to.is_empty(), rest.is_empty()) {
        (true, true) => "/".to_string(),
        (true, false) => rest.to_string(),
        (false, _) => format!("{to}{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let strip = PathRewrite::StripPrefix("/v1".into());
        assert_eq!(strip.apply("/v1/users/1", &[]), "/users/1");
        assert_eq!(strip.apply("/v1", &[]), "/");
        let rep = PathRewrite::ReplacePrefix { from: "/api".into(), to: "/internal/".into() };
        assert_eq!(rep.apply("/api/x", &[]), "/internal/x");
        // `merge_slashes: false` keeps inner runs: never a leading `//` (an authority to URL parsers).
        assert_eq!(strip.apply("/v1//evil.example/x", &[]), "/evil.example/x");
        assert_eq!(strip.apply("/v1///x", &[]), "/x");
        assert_eq!(rep.apply("/api", &[]), "/internal");
    }

    #[test]
    fn templates() {
        let names: Vec<Arc<str>> = vec!["id".into(), "rest".into()];
        let t = Template::parse("/u/{id}/files/{*rest}", &names).unwrap();
        assert_eq!(t.render(&["7", "a/b"]), "/u/7/files/a/b");
        // In a query, a capture is one value.
        let names: Vec<Arc<str>> = vec!["page".into()];
        let q = Template::parse("https://d.example/search?p={page}&safe=1", &names).unwrap();
        assert_eq!(q.render(&["a&safe=0+x;y"]), "https://d.example/search?p=a%26safe%3D0%2Bx%3By&safe=1");
        let p = Template::parse("/to/{page}/x", &names).unwrap();
        assert_eq!(p.render(&["a&b=c"]), "/to/a&b=c/x", "a path keeps its sub-delimiters");
        assert!(Template::parse("/u/{nope}", &names).is_err());
        assert!(Template::parse("/u/{id", &names).is_err());
    }
}

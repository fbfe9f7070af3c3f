//! Problems found while compiling one part of the config, each at a path
//! relative to that part (`allow[2]`, `set.x-team`). Whoever compiled the
//! part nests them under its own key (`routes[3].ip`), so every compile
//! function reports paths the same way and no caller re-prefixes by hand.

/// `(path under the compiled part, message)` pairs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FieldErrors(Vec<(String, String)>);

impl FieldErrors {
    pub fn new() -> FieldErrors {
        FieldErrors(Vec::new())
    }

    /// One problem at `path` (empty: the part itself).
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> FieldErrors {
        FieldErrors(vec![(path.into(), message.into())])
    }

    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }

    pub fn push(&mut self, (path, message): (String, String)) {
        self.0.push((path, message));
    }

    /// Takes `inner`'s problems, found under `key`.
    pub fn nest(&mut self, key: &str, inner: FieldErrors) {
        self.0.extend(inner.0.into_iter().map(|(p, m)| (join(key, &p), m)));
    }

    /// `value`, unless a problem was found.
    pub fn or_value<T>(self, value: T) -> Result<T, FieldErrors> {
        if self.0.is_empty() { Ok(value) } else { Err(self) }
    }
}

impl std::ops::Deref for FieldErrors {
    type Target = [(String, String)];

    fn deref(&self) -> &[(String, String)] {
        &self.0
    }
}

impl IntoIterator for FieldErrors {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// `key` and a path under it: `a` + `b` = `a.b`, `a` + `[1]` = `a[1]`.
pub fn join(key: &str, path: &str) -> String {
    match (key, path) {
        (k, "") => k.to_string(),
        ("", p) => p.to_string(),
        (k, p) if p.starts_with('[') => format!("{k}{p}"),
        (k, p) => format!("{k}.{p}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_joins_paths_the_way_yaml_paths_read() {
        let mut inner = FieldErrors::new();
        inner.add("allow[2]", "bad");
        inner.add("", "whole");
        inner.add("[0]", "first");
        let mut outer = FieldErrors::new();
        outer.nest("routes[1].ip", inner);
        let paths: Vec<String> = outer.into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["routes[1].ip.allow[2]", "routes[1].ip", "routes[1].ip[0]"]);
    }
}

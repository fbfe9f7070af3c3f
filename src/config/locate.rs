//! Maps a config path (`routes[2].upstream`) to the line and column where
//! that node starts in the YAML text, so that errors found after parsing
//! (unknown upstream, duplicate name…) can still point at the line.

use std::collections::HashMap;

use granit_parser::{Event, Parser};

/// Line and column (both 1-based) of every node, keyed by its config path.
#[derive(Debug, Default, Clone)]
pub struct Locations {
    by_path: HashMap<String, (usize, usize)>,
    /// Keys met a second time in their mapping, where the second one is.
    duplicates: Vec<(String, (usize, usize))>,
}

enum Frame {
    /// Inside a mapping: `key` is the pending key (None while a key is expected).
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

impl Locations {
    /// Indexes `text`. A YAML syntax error simply stops the index: the
    /// deserializer reports syntax errors itself.
    pub fn index(text: &str) -> Locations {
        let mut by_path = HashMap::new();
        let mut duplicates = Vec::new();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let pos = (span.start.line(), span.start.col() + 1);
            // The path of the node this event starts (None for a mapping
            // key). Other events (comments, ends) leave a pending key for
            // the node that follows: a comment between `auth:` and its
            // value once took the key, and the whole block lost its paths.
            if !starts_node(&event) {
                if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
                    stack.pop();
                }
                continue;
            }
            let node_path = match stack.last_mut() {
                None => Some(String::new()),
                Some(Frame::Seq { path, next }) => {
                    let p = format!("{path}[{next}]");
                    *next += 1;
                    Some(p)
                }
                Some(Frame::Map { path, key }) => match key.take() {
                    Some(k) => Some(join(path, &k)),
                    None => {
                        if let Event::Scalar(value, ..) = &event {
                            let p = join(path, value);
                            // (Not the keys under a repeated key: they repeat with it.)
                            let under_repeat = |d: &(String, _)| {
                                p.strip_prefix(d.0.as_str()).is_some_and(|rest| rest.starts_with(['.', '[']))
                            };
                            if value != "<<" && by_path.contains_key(&p) && !duplicates.iter().any(under_repeat) {
                                duplicates.push((p, pos));
                            }
                            *key = Some(value.to_string());
                        }
                        None
                    }
                },
            };
            match event {
                Event::Scalar(..) | Event::Alias(..) => {
                    if let Some(p) = node_path {
                        by_path.entry(p).or_insert(pos);
                    }
                }
                Event::MappingStart(..) => {
                    let p = node_path.unwrap_or_default();
                    by_path.entry(p.clone()).or_insert(pos);
                    stack.push(Frame::Map { path: p, key: None });
                }
                Event::SequenceStart(..) => {
                    let p = node_path.unwrap_or_default();
                    by_path.entry(p.clone()).or_insert(pos);
                    stack.push(Frame::Seq { path: p, next: 0 });
                }
                _ => {}
            }
        }
        Locations { by_path, duplicates }
    }

    /// Keys given twice in one mapping (every repeat, in file order).
    pub fn duplicates(&self) -> &[(String, (usize, usize))] {
        &self.duplicates
    }

    /// The deepest path of a node that starts exactly at `pos`, if any.
    /// The innermost node that starts on `line` at or before `column`
    /// (the value a position inside a line belongs to).
    pub fn path_on(&self, line: usize, column: usize) -> Option<(&str, (usize, usize))> {
        self.by_path
            .iter()
            .filter(|(_, p)| p.0 == line && p.1 <= column)
            .max_by_key(|(k, p)| (p.1, k.len()))
            .map(|(k, p)| (k.as_str(), *p))
    }

    pub fn path_at(&self, pos: (usize, usize)) -> Option<&str> {
        self.by_path.iter().filter(|(_, p)| **p == pos).map(|(k, _)| k.as_str()).max_by_key(|k| k.len())
    }

    /// Whether the file writes `path` itself (not only a parent of it).
    pub fn has(&self, path: &str) -> bool {
        self.by_path.contains_key(path)
    }

    /// Position of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path;
        loop {
            if let Some(pos) = self.by_path.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

fn starts_node(event: &Event) -> bool {
    matches!(event, Event::Scalar(..) | Event::Alias(..) | Event::MappingStart(..) | Event::SequenceStart(..))
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths() {
        let text = "listeners:\n  - name: a\n    bind: x\nroutes:\n  - name: r1\n  - name: r2\n    upstream: nope\n";
        let loc = Locations::index(text);
        assert_eq!(loc.find("listeners[0].bind"), Some((3, 11)));
        assert_eq!(loc.find("routes[1].upstream"), Some((7, 15)));
        assert_eq!(loc.find("routes[1].match.path"), Some((6, 5)));
    }

    #[test]
    fn comments_between_a_key_and_its_value_keep_the_paths() {
        let text = "auth:\n  # the providers\n  keys:\n    # one\n    api_key: { header: X-Key }\nroutes:\n  # first\n  - name: r\n    # its upstream\n    upstream: u\n";
        let loc = Locations::index(text);
        assert_eq!(loc.find("auth.keys.api_key.header"), Some((5, 24)));
        assert_eq!(loc.find("routes[0].upstream"), Some((10, 15)));
    }

    #[test]
    fn flow_collections() {
        let loc = Locations::index("upstreams:\n  u: { targets: [ \"http://a\", \"http://b\" ] }\n");
        assert_eq!(loc.find("upstreams.u.targets[1]"), Some((2, 31)));
    }
}

//! JSON members named as a declared property in another case (`"COUNT"`
//! or `"Count"` where the schema declares `count`). JSON Schema matches
//! names exactly, so such a member goes unchecked; but Go's
//! `encoding/json` and ASP.NET Core's `System.Text.Json` (web defaults)
//! bind names ignoring case, the last one read winning: `{"count": 1,
//! "COUNT": 99}` passed a `maximum: 10` and the service read 99. Refused,
//! as the query's and form's other spellings are.
//!
//! The schema is compiled into levels: for each schema a value may meet,
//! the property names it and what applies in place (`allOf`, `anyOf`,
//! `oneOf`, `if`/`then`/`else`, `$ref`) declare, and the schemas of its
//! members and items. A body is walked along them; a name no level
//! declares that folds to one a level does is a problem. Where the
//! schema says nothing of a value (no schema, free keys without one),
//! the walk stops.

use std::collections::{HashMap, HashSet};

use jsonschema::json::{Array, Json, Node, Object};
use serde_json::Value;
use smallvec::SmallVec;

use super::Problem;
use super::deep::Index;

/// Keywords whose schemas apply to the same value and declare its members.
const IN_PLACE: &[&str] = &["allOf", "anyOf", "oneOf", "if", "then", "else"];

/// The most schemas one level joins (a schema of thousands of branches is
/// cut there: fewer names known, never a false refusal).
const MAX_JOINED: usize = 4096;

/// The walk's levels for one schema.
pub(super) struct CaseGuard {
    levels: Vec<Level>,
}

#[derive(Default)]
struct Level {
    /// Each declared name, with the levels of its schemas.
    declared: HashMap<String, SmallVec<[u32; 2]>>,
    /// Each declared name by its folded spelling.
    folded: HashMap<String, String>,
    /// Levels of members no `properties` names (`additionalProperties`).
    others: SmallVec<[u32; 2]>,
    /// Levels of members whose names match a `patternProperties` pattern.
    patterns: Vec<(regex::Regex, u32)>,
    /// Levels of array items.
    items: SmallVec<[u32; 2]>,
}

/// The levels a value meets, joined: what a member name is checked against
/// once per set (a member was looked up in each level of the set: fifty
/// `anyOf` branches made a 56 KB body cost seconds).
#[derive(Default)]
struct Joined {
    declared: HashMap<String, Vec<u32>>,
    folded: HashMap<String, String>,
    others: Vec<u32>,
    patterns: Vec<(regex::Regex, u32)>,
    items: Vec<u32>,
}

/// Sets of levels met so far in one body, joined.
type Sets = HashMap<Vec<u32>, std::rc::Rc<Joined>>;

fn sorted(mut ids: Vec<u32>) -> Vec<u32> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl CaseGuard {
    /// The guard for `schema`; `None` when it declares no property.
    pub(super) fn of(schema: &Value) -> Option<CaseGuard> {
        let mut build = Build { index: Index::of(schema), ids: HashMap::new(), levels: Vec::new(), todo: Vec::new() };
        build.id(schema);
        while let Some((id, node)) = build.todo.pop() {
            let level = build.level(node);
            build.levels[id as usize] = level;
        }
        build.levels.iter().any(|l| !l.declared.is_empty()).then_some(CaseGuard { levels: build.levels })
    }

    /// Adds a problem for each member of `root` named as a declared
    /// property in another case (at most `max` problems in all).
    pub(super) fn check<'a, J: Json, N: Node<'a, J>>(&self, root: &N, max: usize, problems: &mut Vec<Problem>) {
        self.walk(root, vec![0], &mut Sets::new(), &mut String::new(), max, problems);
    }

    /// The levels of `set` joined (made once per set and body).
    fn joined(&self, set: Vec<u32>, sets: &mut Sets) -> std::rc::Rc<Joined> {
        if let Some(joined) = sets.get(&set) {
            return joined.clone();
        }
        let mut joined = Joined::default();
        for level in set.iter().map(|id| &self.levels[*id as usize]) {
            for (name, children) in &level.declared {
                joined.declared.entry(name.clone()).or_default().extend_from_slice(children);
            }
            for (folded, name) in &level.folded {
                joined.folded.entry(folded.clone()).or_insert_with(|| name.clone());
            }
            joined.others.extend_from_slice(&level.others);
            joined.patterns.extend(level.patterns.iter().cloned());
            joined.items.extend_from_slice(&level.items);
        }
        for children in joined.declared.values_mut() {
            *children = sorted(std::mem::take(children));
        }
        joined.others = sorted(std::mem::take(&mut joined.others));
        joined.items = sorted(std::mem::take(&mut joined.items));
        let joined = std::rc::Rc::new(joined);
        sets.insert(set, joined.clone());
        joined
    }

    fn walk<'a, J: Json, N: Node<'a, J>>(
        &self,
        node: &N,
        set: Vec<u32>,
        sets: &mut Sets,
        at: &mut String,
        max: usize,
        problems: &mut Vec<Problem>,
    ) {
        if set.is_empty() || problems.len() >= max {
            return;
        }
        let joined = self.joined(set, sets);
        if let Some(object) = node.as_object() {
            for (name, value) in object.members() {
                let name = name.as_ref();
                let next = match joined.declared.get(name) {
                    Some(children) => children.clone(),
                    None => {
                        if let Some(meant) = joined.folded.get(&fold(name)) {
                            let detail = format!(
                                "`{}` is read as `{meant}` by some services (Go's and ASP.NET Core's JSON readers \
                                 ignore case): send it once, as `{meant}`",
                                super::cut(name)
                            );
                            let pointer = format!("{at}/{}", super::pointer_token(name));
                            problems.push(Problem { place: "body", pointer, detail });
                        }
                        let matched = joined.patterns.iter().filter(|(p, _)| p.is_match(name)).map(|(_, id)| *id);
                        sorted(joined.others.iter().copied().chain(matched).collect())
                    }
                };
                let len = at.len();
                at.push('/');
                at.push_str(&super::pointer_token(name));
                self.walk(&value, next, sets, at, max, problems);
                at.truncate(len);
            }
        } else if let Some(array) = node.as_array() {
            if joined.items.is_empty() {
                return;
            }
            for (i, element) in array.elements().enumerate() {
                let len = at.len();
                at.push('/');
                at.push_str(&i.to_string());
                self.walk(&element, joined.items.clone(), sets, at, max, problems);
                at.truncate(len);
            }
        }
    }
}

/// A name as a case-blind reader compares it: each character to one
/// other, upper- then lower-cased where each is one character (Go's simple
/// folding: `K` (Kelvin) and `ſ` meet `k` and `s`, `ẞ` meets `ß`; `ß` is
/// not `ss`, nor `ﬁ` `fi`).
fn fold(name: &str) -> String {
    fn single(mut chars: impl Iterator<Item = char>) -> Option<char> {
        let first = chars.next()?;
        chars.next().is_none().then_some(first)
    }
    name.chars()
        .map(|c| {
            let upper = single(c.to_uppercase()).unwrap_or(c);
            single(upper.to_lowercase()).unwrap_or(upper)
        })
        .collect()
}

struct Build<'a> {
    index: Index<'a>,
    ids: HashMap<*const Value, u32>,
    levels: Vec<Level>,
    todo: Vec<(u32, &'a Value)>,
}

impl<'a> Build<'a> {
    /// The level of the value a schema meets (made once per schema).
    fn id(&mut self, schema: &'a Value) -> u32 {
        if let Some(&id) = self.ids.get(&(schema as *const Value)) {
            return id;
        }
        let id = self.levels.len() as u32;
        self.levels.push(Level::default());
        self.ids.insert(schema, id);
        self.todo.push((id, schema));
        id
    }

    /// `schema` and every schema that applies in place with it.
    fn joined(&self, schema: &'a Value) -> Vec<&'a Value> {
        let (mut seen, mut out, mut open) = (HashSet::new(), Vec::new(), vec![schema]);
        while let Some(node) = open.pop() {
            if !node.is_object() || !seen.insert(node as *const Value) || out.len() >= MAX_JOINED {
                continue;
            }
            out.push(node);
            if let Ok(Some(target)) = self.index.target(node) {
                open.push(target);
            }
            for key in IN_PLACE {
                match node.get(*key) {
                    Some(Value::Array(list)) => open.extend(list),
                    Some(sub @ Value::Object(_)) => open.push(sub),
                    _ => {}
                }
            }
            // `dependencies` (draft 7) holds schemas or, for
            // `dependentRequired`'s part, lists of names (not schemas).
            for key in ["dependentSchemas", "dependencies"] {
                if let Some(Value::Object(by_name)) = node.get(key) {
                    open.extend(by_name.values().filter(|v| v.is_object()));
                }
            }
        }
        out
    }

    fn level(&mut self, schema: &'a Value) -> Level {
        let mut level = Level::default();
        for node in self.joined(schema) {
            if let Some(properties) = node.get("properties").and_then(Value::as_object) {
                for (name, sub) in properties {
                    let child = self.id(sub);
                    level.declared.entry(name.clone()).or_default().push(child);
                    level.folded.entry(fold(name)).or_insert_with(|| name.clone());
                }
            }
            for key in ["additionalProperties", "unevaluatedProperties"] {
                if let Some(sub @ Value::Object(_)) = node.get(key) {
                    level.others.push(self.id(sub));
                }
            }
            // A pattern the regex crate cannot read is left out: its
            // members are not walked (nothing refused for it).
            for (pattern, sub) in node.get("patternProperties").and_then(Value::as_object).into_iter().flatten() {
                if let (Ok(regex), true) = (regex::Regex::new(pattern), sub.is_object()) {
                    let child = self.id(sub);
                    level.patterns.push((regex, child));
                }
            }
            for key in ["items", "prefixItems", "additionalItems", "unevaluatedItems", "contains"] {
                match node.get(key) {
                    Some(sub @ Value::Object(_)) => level.items.push(self.id(sub)),
                    Some(Value::Array(list)) => {
                        for sub in list.iter().filter(|s| s.is_object()) {
                            level.items.push(self.id(sub));
                        }
                    }
                    _ => {}
                }
            }
        }
        level
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointers(schema: &Value, body: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(guard) = CaseGuard::of(schema) {
            guard.check(&body, 100, &mut problems);
        }
        problems.into_iter().map(|p| p.pointer).collect()
    }

    #[test]
    fn members_in_another_case_are_found_where_declared() {
        let schema = json!({ "type": "object", "properties": {
            "count": { "type": "integer", "maximum": 10 },
            "id": {}, "ID": {},
            "items": { "type": "array", "items": { "$ref": "#/$defs/line" } },
            "labels": { "type": "object", "additionalProperties": { "type": "string" } } },
            "$defs": { "line": { "allOf": [ { "properties": { "sku": {} } } ] } } });
        assert!(pointers(&schema, &json!({ "count": 1, "id": 1, "ID": 2 })).is_empty(), "both declared");
        assert_eq!(pointers(&schema, &json!({ "count": 1, "COUNT": 99 })), ["/COUNT"]);
        assert_eq!(pointers(&schema, &json!({ "Count": 99 })), ["/Count"]);
        assert_eq!(pointers(&schema, &json!({ "items": [ { "sku": 1 }, { "SKU": 2 } ] })), ["/items/1/SKU"]);
        // Free keys of a map are its own; folding as Go does (Kelvin sign).
        assert!(pointers(&schema, &json!({ "labels": { "Count": "x", "Sku": "y" } })).is_empty());
        assert_eq!(pointers(&schema, &json!({ "\u{212A}": 1 })), Vec::<String>::new(), "no declared `k`");
        let kelvin = json!({ "properties": { "kind": {} } });
        assert_eq!(pointers(&kelvin, &json!({ "\u{212A}ind": 1 })), ["/\u{212A}ind"]);
        // A schema that declares nothing has no guard.
        assert!(CaseGuard::of(&json!({ "type": "object" })).is_none());
        // Recursive schemas end.
        let tree = json!({ "$defs": { "n": { "properties": { "name": {}, "kids": { "items": { "$ref": "#/$defs/n" } } } } },
                           "$ref": "#/$defs/n" });
        assert_eq!(pointers(&tree, &json!({ "kids": [ { "kids": [ { "NAME": 1 } ] } ] })), ["/kids/0/kids/0/NAME"]);
        // Members by `patternProperties`, and draft 7's `dependencies`.
        let more = json!({ "properties": { "count": {} },
            "patternProperties": { "^x-": { "properties": { "name": { "maxLength": 3 } } } },
            "dependencies": { "mode": { "properties": { "limit": {} } }, "other": [ "count" ] } });
        assert_eq!(pointers(&more, &json!({ "count": 1, "x-a": { "NAME": "long" } })), ["/x-a/NAME"]);
        assert_eq!(pointers(&more, &json!({ "mode": "x", "LIMIT": 99 })), ["/LIMIT"]);
        // One character for one, as Go folds: `ẞ` is `ß`; `ß` is no `ss`, `ﬁ` no `fi`.
        let street = json!({ "properties": { "straße": {}, "mass": {}, "file": {} } });
        assert_eq!(pointers(&street, &json!({ "STRAẞE": "x" })), ["/STRAẞE"]);
        assert!(pointers(&street, &json!({ "maß": 1, "ﬁle": 2 })).is_empty());
    }

    /// Many branches are joined once per set of levels, not looked up one
    /// by one for every member (fifty `anyOf` branches, 80,000 members).
    #[test]
    fn many_branches_are_joined_once() {
        let branches: Vec<Value> = (0..50)
            .map(|i| {
                json!({ "properties": { format!("k{i}"): {} },
                             "additionalProperties": { "properties": { format!("n{i}"): {} } } })
            })
            .collect();
        let schema = json!({ "anyOf": branches });
        let guard = CaseGuard::of(&schema).unwrap();
        let body: serde_json::Map<String, Value> =
            (0..80_000).map(|i| (format!("m{i}"), json!({ "n7": 1, "x": 2 }))).collect();
        let mut problems = Vec::new();
        guard.check(&&Value::Object(body), 100, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        let mut problems = Vec::new();
        guard.check(&&json!({ "m": { "N7": 1 } }), 100, &mut problems);
        assert_eq!(problems.iter().map(|p| p.pointer.as_str()).collect::<Vec<_>>(), ["/m/N7"]);
    }
}

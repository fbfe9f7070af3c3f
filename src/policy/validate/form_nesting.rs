//! Nested form fields, as PHP, Rails and `qs` (Express) build them:
//! `user[email]=a` is the member `email` of `user`, `tags[]=x` an item
//! pushed on `tags`, `ids[0]=1` the item at index 0, and they nest
//! (`tax_ids[0][type]=vat`, Stripe's forms; Rails' `form_for`). A form
//! whose schema declares `user` as an object is checked on what the
//! service builds; without this, every such field was refused as another
//! spelling of `user`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Problem;
use super::params::{array_items, is_type, member_in_other_case, object_additional, object_properties, scalar};

/// How many `[…]` a field may nest (`qs` reads 5, Stripe's forms use 5;
/// PHP allows 64). Deeper names stay other spellings, refused: a tree of
/// unique deep names costs far more memory than the body's bytes.
const MAX_DEPTH: usize = 8;
/// The largest `[N]` read as an index (PHP and `qs` read larger ones as keys).
const MAX_INDEX: usize = 10_000;

#[derive(Debug, PartialEq)]
enum Segment<'k> {
    Member(&'k str),
    Index(usize),
    Push,
}

/// What the fields under one declared name build.
enum Node {
    Leaf(String),
    Members(BTreeMap<String, Node>),
    Items(BTreeMap<usize, Node>, Vec<Node>),
}

/// Takes out of `fields` those that nest under a declared object or array
/// property (and no plain field of the same name is sent: that mix is
/// left to the other-spelling refusal) and returns each such property's
/// value, read as its schema types it.
pub(super) fn nest(
    fields: &mut BTreeMap<String, Vec<String>>,
    properties: &Map<String, Value>,
    problems: &mut Vec<Problem>,
) -> Vec<(String, Value)> {
    let mut built: BTreeMap<String, Node> = BTreeMap::new();
    let keys: Vec<String> = fields.keys().filter(|k| !properties.contains_key(*k)).cloned().collect();
    for key in keys {
        let Some((base, segments)) = path(&key) else { continue };
        let Some(schema) = properties.get(base) else { continue };
        if fields.contains_key(base) || !(is_type(schema, "object") || is_type(schema, "array")) {
            continue;
        }
        let values = fields.get(&key).cloned().unwrap_or_default();
        let pointer = format!("/{}", super::pointer_token(&key));
        let root = built.entry(base.to_string()).or_insert_with(|| empty_for(&segments[0]));
        let pushes = segments.last() == Some(&Segment::Push);
        if values.len() > 1 && !pushes {
            let detail = format!("given {} times where one value is expected", values.len());
            problems.push(Problem { place: "body", pointer: pointer.clone(), detail });
        }
        let take = if pushes { values.len() } else { 1 };
        for value in values.into_iter().take(take) {
            if !put(root, &segments, value) {
                let detail = "mixes a list, members or a value under one name: the service would keep one".to_string();
                problems.push(Problem { place: "body", pointer: pointer.clone(), detail });
                break;
            }
        }
        fields.remove(&key);
    }
    built.into_iter().map(|(base, node)| (base.clone(), value_of(node, &properties[&base], &base, problems))).collect()
}

/// `user[a][0]` as `user` and its segments; `None` for a name that does
/// not nest, or nests in a way the frameworks disagree on (an unclosed
/// `[`, text after a `]`, too deep, a huge index).
fn path(key: &str) -> Option<(&str, Vec<Segment<'_>>)> {
    let open = key.find('[')?;
    let (base, mut rest) = key.split_at(open);
    if base.is_empty() {
        return None;
    }
    let mut segments = Vec::new();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let close = inner.find(']')?;
        let name = &inner[..close];
        if name.contains('[') || segments.len() == MAX_DEPTH {
            return None;
        }
        segments.push(match name {
            "" => Segment::Push,
            n if n.bytes().all(|b| b.is_ascii_digit()) && n.len() <= 5 => match n.parse() {
                Ok(i) if i <= MAX_INDEX => Segment::Index(i),
                _ => return None,
            },
            n => Segment::Member(n),
        });
        rest = &inner[close + 1..];
    }
    Some((base, segments))
}

fn empty_for(segment: &Segment<'_>) -> Node {
    match segment {
        Segment::Member(_) => Node::Members(BTreeMap::new()),
        _ => Node::Items(BTreeMap::new(), Vec::new()),
    }
}

/// Puts `value` at `segments` under `node`; false when the name is used
/// as two kinds of thing (`a[x]=1&a[0]=2`, `a[x]=1&a[x][y]=2`).
fn put(node: &mut Node, segments: &[Segment<'_>], value: String) -> bool {
    let Some((first, rest)) = segments.split_first() else {
        return match node {
            Node::Leaf(_) => false,
            Node::Members(m) if m.is_empty() => {
                *node = Node::Leaf(value);
                true
            }
            Node::Items(i, p) if i.is_empty() && p.is_empty() => {
                *node = Node::Leaf(value);
                true
            }
            _ => false,
        };
    };
    let fresh = || rest.first().map_or(Node::Leaf(String::new()), empty_for);
    let child = match (node, first) {
        // One leaf reached by two spellings (`a[0]` and `a[00]`): two values.
        (Node::Members(m), Segment::Member(name)) if rest.is_empty() && m.contains_key(*name) => return false,
        (Node::Items(items, _), Segment::Index(i)) if rest.is_empty() && items.contains_key(i) => return false,
        (Node::Members(m), Segment::Member(name)) => m.entry((*name).to_string()).or_insert_with(fresh),
        (Node::Items(items, _), Segment::Index(i)) => items.entry(*i).or_insert_with(fresh),
        (Node::Items(_, pushed), Segment::Push) => {
            pushed.push(fresh());
            pushed.last_mut().expect("just pushed")
        }
        _ => return false,
    };
    match (child, rest.is_empty()) {
        (Node::Leaf(slot), true) => {
            *slot = value;
            true
        }
        (child, _) => put(child, rest, value),
    }
}

/// The node as a JSON value, each leaf read as its schema's type. `at`:
/// the field name that leads to it (`user[address]`). A member named as
/// a declared one in another case (`user[ROLE]` for `role`) is refused:
/// ASP.NET binds members ignoring case.
fn value_of(node: Node, schema: &Value, at: &str, problems: &mut Vec<Problem>) -> Value {
    match node {
        Node::Leaf(raw) => scalar(&raw, schema),
        Node::Members(members) => {
            let properties = object_properties(schema);
            let extra = object_additional(schema).unwrap_or(&Value::Null);
            let object = members
                .into_iter()
                .map(|(k, n)| {
                    let name = format!("{at}[{k}]");
                    if let Some(meant) = properties.as_deref().and_then(|p| member_in_other_case(p, &k)) {
                        let detail = format!(
                            "`{}` is read as `{at}[{meant}]` by some frameworks (case): send it once, as `{meant}`",
                            super::cut(&name)
                        );
                        problems.push(Problem {
                            place: "body",
                            pointer: format!("/{}", super::pointer_token(&name)),
                            detail,
                        });
                    }
                    let sub = properties.as_deref().and_then(|p| p.get(&k)).unwrap_or(extra);
                    let v = value_of(n, sub, &name, problems);
                    (k, v)
                })
                .collect();
            Value::Object(object)
        }
        Node::Items(indexed, pushed) => {
            let items = array_items(schema).unwrap_or(&Value::Null);
            let indexed = indexed.into_iter().map(|(i, n)| (format!("{at}[{i}]"), n));
            let pushed = pushed.into_iter().map(|n| (format!("{at}[]"), n));
            Value::Array(indexed.chain(pushed).map(|(name, n)| value_of(n, items, &name, problems)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_nest_as_the_frameworks_read_them() {
        assert_eq!(path("user[email]"), Some(("user", vec![Segment::Member("email")])));
        assert_eq!(path("a[0][b][]"), Some(("a", vec![Segment::Index(0), Segment::Member("b"), Segment::Push])));
        let too_deep = format!("a{}", "[x]".repeat(9));
        for odd in ["user", "[x]", "user[a", "user[a]b", "user[a[b]]", too_deep.as_str()] {
            assert_eq!(path(odd), None, "{odd}");
        }
        // A long run of digits is a key, as PHP and `qs` read it.
        assert_eq!(path("a[99999999]"), Some(("a", vec![Segment::Member("99999999")])));
    }

    #[test]
    fn nested_fields_build_the_declared_property() {
        let properties = json!({
            "metadata": { "type": "object", "additionalProperties": { "type": "string" } },
            "tax_ids": { "type": "array", "items": { "type": "object", "properties": { "n": { "type": "integer" } } } },
            "amount": { "type": "integer" }
        });
        let properties = properties.as_object().unwrap();
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in [("metadata[order]", "6735"), ("tax_ids[1][n]", "2"), ("tax_ids[0][n]", "1"), ("amount", "5")] {
            fields.entry(k.into()).or_default().push(v.into());
        }
        let mut problems = Vec::new();
        let built = nest(&mut fields, properties, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            built,
            [
                ("metadata".to_string(), json!({ "order": "6735" })),
                ("tax_ids".to_string(), json!([{ "n": 1 }, { "n": 2 }]))
            ]
        );
        assert_eq!(fields.keys().collect::<Vec<_>>(), ["amount"], "the rest stays");
        // One name used two ways: refused.
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        fields.insert("metadata[a]".into(), vec!["1".into()]);
        fields.insert("metadata[a][b]".into(), vec!["2".into()]);
        let mut problems = Vec::new();
        nest(&mut fields, properties, &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
    }
}

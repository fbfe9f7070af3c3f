//! Query parameters, headers and form fields: strings on the wire, read as
//! the type their schema declares (`"10"` is the integer 10 for
//! `type: integer`) before the schema checks them. A value that does not
//! read as the type stays a string, and the schema says what was expected.

use super::report_budget::{ReportBudget, TOO_INTRICATE, may_list};
use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::deep::Index;
use super::{Problem, compile_schema};

/// One declared parameter.
pub struct Param {
    pub name: String,
    schema: jsonschema::Validator,
    /// The schema as written (its `type` and `items` decide the reading).
    shape: Value,
    pub(super) required: bool,
    style: Style,
    /// OpenAPI's `explode` (default: true for `form`, false otherwise):
    /// how an object's members are written (`k=v` pairs or `k,v` runs).
    explode: bool,
    /// `content: application/json` (OpenAPI's `content` in place of a
    /// style): the value is a JSON text, parsed before the check.
    json: bool,
    /// How much listing a failing value's errors may cost (`None`: linear).
    report_budget: Option<ReportBudget>,
}

/// How a parameter's value is written (OpenAPI's `style` and `explode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// One value per occurrence (`form` exploded: `?id=1&id=2`).
    Repeated,
    /// An array in one value, split on this character.
    Delimited(char),
    /// A path segment `.5`, `.1,2` or, exploded, `.1.2`.
    Label { explode: bool },
    /// A path segment `;id=5`, `;id=1,2` or, exploded, `;id=1;id=2`.
    Matrix { explode: bool },
    /// Query members `name[key]=value` making an object.
    DeepObject,
}

impl Param {
    /// `schema`: a JSON Schema with the parameter's own members beside it:
    /// `required: true|false`, and OpenAPI's `style` and `explode`. `place`
    /// (`query`, `header`, `path`) decides the default style.
    pub fn compile(
        place: &str,
        name: &str,
        schema: &Value,
        formats: &BTreeMap<String, String>,
    ) -> Result<Param, String> {
        let mut shape = schema.clone();
        let Some(members) = shape.as_object_mut() else {
            return Err("a JSON Schema such as `{ type: integer, minimum: 1 }`".into());
        };
        // No JSON Schema keyword: JSON Schema would ignore it, and the
        // parameter would be checked for presence alone.
        if members.contains_key("schema") {
            return Err("a parameter's schema is written in place, not under `schema`: \
                        `{ type: string, enum: [a, b], required: true }`"
                .into());
        }
        let required = match members.remove("required") {
            None => place == "path",
            Some(Value::Bool(b)) => b,
            Some(_) => return Err("`required` is true or false here (a parameter's, not an object's list)".into()),
        };
        let json = match members.remove("content") {
            None => false,
            Some(Value::String(media)) => super::is_json(&super::media_essence(&media)),
            Some(_) => return Err("`content` is a media type such as `application/json`".into()),
        };
        let style = members.remove("style");
        let explode = members.remove("explode");
        let exploded = explode.as_ref().and_then(Value::as_bool);
        let style_name = style.as_ref().and_then(Value::as_str);
        let style = match (place, style_name, exploded) {
            ("query", None | Some("form"), None | Some(true)) => Style::Repeated,
            ("query", None | Some("form"), Some(false)) => Style::Delimited(','),
            ("query", Some("spaceDelimited"), _) => Style::Delimited(' '),
            ("query", Some("pipeDelimited"), _) => Style::Delimited('|'),
            ("query", Some("deepObject"), _) => Style::DeepObject,
            ("header" | "path", None | Some("simple"), _) => Style::Delimited(','),
            ("path", Some("label"), e) => Style::Label { explode: e == Some(true) },
            ("path", Some("matrix"), e) => Style::Matrix { explode: e == Some(true) },
            ("cookie", None | Some("form"), _) => Style::Delimited(','),
            (_, Some(other), _) => {
                return Err(format!("style `{other}` is not supported for a {place} parameter"));
            }
            (_, None, _) => Style::Delimited(','),
        };
        // The shape that decides how values are read, `$ref`s in place
        // (followed as the validator follows them: anchors, `$id`s too).
        let read_as = inlined(&shape, &Index::of(&shape), 0, &mut INLINED_NODES.clone());
        // An array too: Stripe's description writes its `expand` lists so,
        // and its clients send them as `expand[]=a` or `expand[0]=a`.
        // A scalar (Stripe's `application: anyOf [string, enum [""]]`):
        // nothing to spread over members; read as `name=value`.
        let style = if style == Style::DeepObject && !is_type(&read_as, "object") && !is_type(&read_as, "array") {
            Style::Repeated
        } else {
            style
        };
        let form = matches!((place, style_name), ("query" | "cookie", None | Some("form")));
        let explode = exploded.unwrap_or(form);
        let schema = compile_schema(&shape, formats)?;
        let report_budget = ReportBudget::of(&shape);
        Ok(Param { name: name.to_string(), schema, shape: read_as, required, style, explode, json, report_budget })
    }

    /// Checks the values sent.
    pub fn check(&self, place: &'static str, values: &[&str], problems: &mut Vec<Problem>) {
        if values.is_empty() {
            if self.required {
                let what = match place {
                    "header" => "header",
                    "path" => "path parameter",
                    "cookie" => "cookie",
                    _ => "query parameter",
                };
                problems.push(Problem {
                    place,
                    pointer: self.name.clone(),
                    detail: format!("the {what} `{}` is required", self.name),
                });
            }
            return;
        }
        // A value that is not an array given twice: the gateway would check
        // one and the service might read the other (parameter pollution).
        if values.len() > 1 && !is_type(&self.shape, "array") {
            let detail = format!("given {} times where one value is expected", values.len());
            problems.push(Problem { place, pointer: self.name.clone(), detail });
            return;
        }
        if self.json {
            // A name twice in the object is refused, as in a body: the
            // gateway would check one and the service might read the other.
            match crate::config::strict_json::from_str(values[0]) {
                Ok(value) => self.check_value(place, &value, problems),
                Err(_) => self.malformed(place, "a JSON value", problems),
            }
            return;
        }
        if is_type(&self.shape, "object") && !matches!(self.style, Style::Repeated | Style::DeepObject) {
            match self.members_in(values[0]) {
                Some(members) => self.check_members(place, members, problems),
                None => {
                    let expected = match self.style {
                        Style::Label { .. } => "label style: `.value`",
                        Style::Matrix { .. } => "matrix style: `;name=value`",
                        _ if self.explode => "an object as `key=value` pairs separated by `,`",
                        _ => "an object as `key,value` pairs separated by `,`",
                    };
                    self.malformed(place, expected, problems);
                }
            }
            return;
        }
        let array = is_type(&self.shape, "array");
        let split: Vec<&str>;
        let values = match self.style {
            Style::Delimited(d) if array => {
                split = values.iter().flat_map(|v| v.split(d)).map(str::trim).filter(|v| !v.is_empty()).collect();
                &split[..]
            }
            Style::Label { explode } => {
                let Some(rest) = values[0].strip_prefix('.') else {
                    return self.malformed(place, "label style: `.value`", problems);
                };
                split = if array { rest.split(if explode { '.' } else { ',' }).collect() } else { vec![rest] };
                &split[..]
            }
            Style::Matrix { explode } => {
                let Some(rest) = values[0].strip_prefix(';') else {
                    return self.malformed(place, "matrix style: `;name=value`", problems);
                };
                let mut found = Vec::new();
                for pair in rest.split(';') {
                    match pair.split_once('=') {
                        Some((k, v)) if k == self.name => found.push(v),
                        None if pair == self.name => found.push(""),
                        _ => return self.malformed(place, "matrix style: `;name=value`", problems),
                    }
                }
                // `;id=5;id=x`: one value expected, two given (the service
                // may read the last), as for the other places.
                if !array && found.len() > 1 {
                    let detail = format!("given {} times where one value is expected", found.len());
                    problems.push(Problem { place, pointer: self.name.clone(), detail });
                    return;
                }
                split = if array && !explode { found.iter().flat_map(|v| v.split(',')).collect() } else { found };
                &split[..]
            }
            _ => values,
        };
        let value = read(values, &self.shape);
        self.check_value(place, &value, problems);
    }

    fn check_value(&self, place: &'static str, value: &Value, problems: &mut Vec<Problem>) {
        if self.report_budget.is_some() && !self.schema.is_valid(value) && !may_list(self.report_budget, value) {
            problems.push(Problem { place, pointer: self.name.clone(), detail: TOO_INTRICATE.into() });
            return;
        }
        let errors = super::report_budget::listed(
            super::report_budget::values_in(value),
            || self.schema.iter_errors(value),
            || self.schema.validate(value),
        );
        for e in errors {
            let at = e.instance_path().as_str();
            let pointer = if at.is_empty() { self.name.clone() } else { format!("{}{at}", self.name) };
            super::push_once(
                problems,
                Problem { place, pointer, detail: super::detail_of(&e, &super::members_in(value)) },
            );
        }
    }

    /// An object written in one value, by OpenAPI's style table: `simple`
    /// `R,100,G,200` (exploded `R=100,G=200`), `label` `.R,100,G,200`
    /// (`.R=100.G=200`), `matrix` `;color=R,100,G,200` (`;R=100;G=200`),
    /// `form` (not exploded) `R,100,G,200`, `spaceDelimited` and
    /// `pipeDelimited` the same with their separator. `None`: not so written.
    fn members_in<'v>(&self, raw: &'v str) -> Option<Vec<(&'v str, &'v str)>> {
        // The declared form first, then the other: a client that writes
        // `k=v` pairs where runs are declared (or the reverse) is understood.
        self.members_of(raw, self.explode).or_else(|| self.members_of(raw, !self.explode))
    }

    /// `raw`'s members as `key=value` pairs (`exploded`) or `key,value` runs.
    fn members_of<'v>(&self, raw: &'v str, exploded: bool) -> Option<Vec<(&'v str, &'v str)>> {
        let (body, pair_sep, run_sep) = match (self.style, exploded) {
            (Style::Delimited(d), _) => (raw, ',', d),
            (Style::Label { .. }, _) => (raw.strip_prefix('.')?, '.', ','),
            (Style::Matrix { .. }, true) => (raw.strip_prefix(';')?, ';', ','),
            (Style::Matrix { .. }, false) => {
                let rest = raw.strip_prefix(';')?.strip_prefix(self.name.as_str())?;
                (rest.strip_prefix('=').unwrap_or(rest), ',', ',')
            }
            (Style::Repeated | Style::DeepObject, _) => return None,
        };
        if body.is_empty() {
            return Some(Vec::new());
        }
        if exploded {
            return body.split(pair_sep).map(|pair| pair.split_once('=')).collect();
        }
        let parts: Vec<&str> = body.split(run_sep).collect();
        parts.len().is_multiple_of(2).then(|| parts.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
    }

    /// Members read as their properties' types.
    fn members_as_types<'v>(&self, members: impl IntoIterator<Item = (&'v str, &'v str)>) -> Map<String, Value> {
        let properties = object_properties(&self.shape);
        members
            .into_iter()
            .map(|(k, v)| {
                (k.to_string(), scalar(v, properties.as_deref().and_then(|p| p.get(k)).unwrap_or(&Value::Null)))
            })
            .collect()
    }

    /// `tags[]`, the spelling PHP, Rails and `qs` (jQuery, axios) send an
    /// array in: for a parameter declared as an array, and only when no
    /// `tags` is sent beside it, its values are the parameter's (the
    /// service reads `tags[]` as `tags`, so the gateway checks what it
    /// gets). `None` when the parameter is read by its own name.
    pub fn bracket_spelling(&self, pairs: &[(String, String)]) -> Option<String> {
        let array = !self.json && is_type(&self.shape, "array") && !self.name.ends_with("[]");
        (array && !pairs.iter().any(|(k, _)| *k == self.name)).then(|| format!("{}[]", self.name))
    }

    /// A `form`, exploded, object in the query: each member its own
    /// parameter (`?R=100&G=200`), one per property the schema declares.
    pub fn is_exploded_object(&self) -> bool {
        !self.json && self.style == Style::Repeated && is_type(&self.shape, "object")
    }

    /// Whether `key` is a member of this exploded object.
    pub fn declares_member(&self, key: &str) -> bool {
        object_properties(&self.shape).is_some_and(|p| p.contains_key(key))
    }

    /// The member of this exploded object `key` names in another case.
    pub fn member_ignoring_case(&self, key: &str) -> Option<String> {
        let members = object_properties(&self.shape)?;
        members.keys().find(|m| m.eq_ignore_ascii_case(key)).cloned()
    }

    pub fn check_exploded_object(&self, pairs: &[(String, String)], problems: &mut Vec<Problem>) {
        let members: Vec<(&str, &str)> =
            pairs.iter().filter(|(k, _)| self.declares_member(k)).map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if members.is_empty() {
            self.check("query", &[], problems);
            return;
        }
        self.check_members("query", members, problems);
    }

    /// An object's members, each given once (else the gateway would check
    /// one and the service might read another), then the schema.
    fn check_members(&self, place: &'static str, members: Vec<(&str, &str)>, problems: &mut Vec<Problem>) {
        let mut seen = std::collections::BTreeSet::new();
        if let Some((twice, _)) = members.iter().find(|(k, _)| !seen.insert(*k)) {
            let detail = "given more than once where one value is expected".to_string();
            problems.push(Problem { place, pointer: format!("{}/{twice}", self.name), detail });
            return;
        }
        let object = self.members_as_types(members);
        self.check_value(place, &Value::Object(object), problems);
    }
}

impl Param {
    fn malformed(&self, place: &'static str, expected: &str, problems: &mut Vec<Problem>) {
        problems.push(Problem { place, pointer: self.name.clone(), detail: format!("expected {expected}") });
    }

    /// A `deepObject` parameter: its members from `pairs` (`name[key]`), read
    /// as their properties' types, then checked.
    pub fn is_deep_object(&self) -> bool {
        self.style == Style::DeepObject
    }

    pub fn check_deep_object(&self, pairs: &[(String, String)], problems: &mut Vec<Problem>) {
        if !is_type(&self.shape, "object") {
            return self.check_bracket_array(pairs, problems);
        }
        // `created=1600000000` where the schema also takes a scalar
        // (Stripe's `anyOf: [ {object of gt, lt…}, {type: integer} ]`): the value itself.
        let whole: Vec<&str> = pairs.iter().filter(|(k, _)| *k == self.name).map(|(_, v)| v.as_str()).collect();
        let members_sent =
            pairs.iter().any(|(k, _)| k.strip_prefix(self.name.as_str()).is_some_and(|r| r.starts_with('[')));
        if !whole.is_empty() && !members_sent && SCALARS.iter().any(|t| is_type(&self.shape, t)) {
            return self.check("query", &whole, problems);
        }
        // `filter=pink`, `filter[]=pink` or `filter[color=pink`: not members,
        // but a service's query parser may still read them as the parameter
        // (a string or a list where an object was checked).
        let stray = pairs.iter().any(|(k, _)| {
            k.strip_prefix(self.name.as_str())
                .is_some_and(|rest| rest.is_empty() || rest == "[]" || rest.starts_with('[') && !rest.ends_with(']'))
        });
        if stray {
            self.malformed("query", &format!("its members as `{}[key]=value`", self.name), problems);
            return;
        }
        let members: Vec<(&str, &str)> = pairs
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(self.name.as_str()).and_then(|r| r.strip_prefix('[')?.strip_suffix(']'))?;
                Some((key, v.as_str()))
            })
            .collect();
        if members.is_empty() {
            self.check("query", &[], problems);
            return;
        }
        // `filter[STATUS]` for the member `status`: ASP.NET binds members
        // ignoring case, so the service would take a value nobody checked.
        let declared = object_properties(&self.shape);
        let mut other_case = false;
        for (key, _) in &members {
            if let Some(meant) = declared.as_deref().and_then(|d| member_in_other_case(d, key)) {
                let sent = format!("{}[{key}]", self.name);
                let detail = format!(
                    "`{}` is read as `{}[{meant}]` by some frameworks (case): send it once, as `{meant}`",
                    super::cut(&sent),
                    self.name
                );
                problems.push(Problem { place: "query", pointer: sent, detail });
                other_case = true;
            }
        }
        if !other_case {
            self.check_members("query", members, problems);
        }
    }
}

/// The declared member `key` names in another ASCII case, when `key` is
/// not declared itself (`STATUS` for `status`; `Status` beside `status`).
pub(super) fn member_in_other_case<'d>(declared: &'d Map<String, Value>, key: &str) -> Option<&'d str> {
    if declared.contains_key(key) {
        return None;
    }
    declared.keys().find(|d| d.eq_ignore_ascii_case(key)).map(String::as_str)
}

/// The most fields a form body may have (JSON bodies' `max_entries` default).
const MAX_FORM_FIELDS: usize = 10_000;

/// The types a value sent as one string may be read as.
const SCALARS: [&str; 4] = ["integer", "number", "boolean", "string"];

impl Param {
    /// A `deepObject` array (Stripe's `expand`): its items as `name[]=a`
    /// or `name[0]=a` (in index order); anything else under the name
    /// (`name=a`, `name[x]=a`) is refused, as for an object.
    fn check_bracket_array(&self, pairs: &[(String, String)], problems: &mut Vec<Problem>) {
        let mut items: Vec<(usize, usize, &str)> = Vec::new();
        for (at, (k, v)) in pairs.iter().enumerate() {
            let Some(rest) = k.strip_prefix(self.name.as_str()) else { continue };
            let index = match rest.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                Some("") => usize::MAX,
                Some(digits)
                    if !digits.is_empty() && digits.len() <= 6 && digits.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    digits.parse().unwrap_or(usize::MAX)
                }
                // `names` beside `name`: another parameter.
                None if !rest.is_empty() && !rest.starts_with('[') => continue,
                _ => {
                    let expected = format!("its items as `{0}[]=value` or `{0}[0]=value`", self.name);
                    return self.malformed("query", &expected, problems);
                }
            };
            items.push((index, at, v.as_str()));
        }
        // `[0]`, `[1]` by index; `[]` in the order sent, after them.
        items.sort_by_key(|&(index, at, _)| (index, at));
        let values: Vec<&str> = items.iter().map(|&(_, _, v)| v).collect();
        self.check("query", &values, problems);
    }
}

/// How deep [`inlined`] follows references (a recursive schema stops there).
const INLINED_DEPTH: u32 = 4;

/// `schema` with its `$ref`s put in place, a few levels deep: the shape
/// that decides how values are read (an integer, an array's items, an
/// object's members), not what checks them. `budget`: the nodes it may
/// still copy from inside references (`INLINED_NODES` in all; the schema's
/// own nodes are not counted); past it, a reference is put in place one
/// level deep, its own references left as they are (their values read as
/// text): forty properties each referring to a type of forty took
/// seconds and gigabytes to load, four levels deep.
fn inlined(schema: &Value, index: &Index<'_>, depth: u32, budget: &mut usize) -> Value {
    if depth > 0 {
        if *budget == 0 {
            return schema.clone();
        }
        *budget -= 1;
    }
    match schema {
        Value::Object(m) => {
            if let Ok(Some(target)) = index.target(schema)
                && depth < INLINED_DEPTH
            {
                let mut merged = match inlined(target, index, depth + 1, budget) {
                    Value::Object(t) => t,
                    _ => Map::new(),
                };
                for (k, v) in m.iter().filter(|(k, _)| !REFERENCE_KEYS.contains(&k.as_str())) {
                    if !merged.contains_key(k) {
                        let v = inlined(v, index, depth, budget);
                        merged.insert(k.clone(), v);
                    }
                }
                return Value::Object(merged);
            }
            let mut out = Map::new();
            for (k, v) in m.iter().filter(|(k, _)| *k != "$defs") {
                let v = inlined(v, index, depth, budget);
                out.insert(k.clone(), v);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| inlined(v, index, depth, budget)).collect()),
        other => other.clone(),
    }
}

/// The most nodes [`inlined`] makes for one schema.
const INLINED_NODES: usize = 20_000;

/// What a schema put in place of its reference leaves out.
const REFERENCE_KEYS: &[&str] = &["$ref", "$dynamicRef", "$defs", "$id", "$anchor", "$dynamicAnchor"];

pub(super) fn is_type(schema: &Value, name: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == name,
        Some(Value::Array(ts)) => ts.iter().any(|t| t == name),
        // No `type`: what its `enum`/`const` values are, or its `anyOf`/
        // `oneOf` branches' or `allOf` parts' types (`enum: [10, 25]` reads `10` as a number;
        // as text, no value could ever match).
        None => {
            let of_value = |v: &Value| match v {
                Value::Number(n) if name == "integer" => n.is_i64() || n.is_u64(),
                Value::Number(_) => name == "number",
                Value::Bool(_) => name == "boolean",
                Value::Null => name == "null",
                Value::String(_) => name == "string",
                _ => false,
            };
            schema.get("enum").and_then(Value::as_array).is_some_and(|vs| vs.iter().any(of_value))
                || schema.get("const").is_some_and(of_value)
                || ["anyOf", "oneOf", "allOf"].iter().any(|k| {
                    schema.get(*k).and_then(Value::as_array).is_some_and(|bs| bs.iter().any(|b| is_type(b, name)))
                })
        }
        _ => false,
    }
}

/// The values as the schema's type: an array of all of them, or the first.
fn read(values: &[&str], schema: &Value) -> Value {
    // `custom_fields=` where the schema is a list or `""` (Stripe's way to
    // clear a list: `anyOf: [array, enum [""]]`): the empty string itself.
    let cleared = matches!(values, [""]) && SCALARS.iter().any(|t| is_type(schema, t));
    if is_type(schema, "array") && !cleared {
        let items = array_items(schema).unwrap_or(&Value::Null);
        return Value::Array(values.iter().map(|v| scalar(v, items)).collect());
    }
    scalar(values.first().copied().unwrap_or(""), schema)
}

/// An object schema's `properties`, also where the object is a branch
/// (`anyOf: [ { type: object, properties: { gte: { type: integer } } }, { type: integer } ]`).
/// The `properties` of the schema and of its `allOf` parts are taken
/// together, as they all apply (OpenAPI's inheritance, `allOf: [ {$ref:
/// Base}, {properties…} ]`: the second part's were read as text, and not
/// guarded by case).
pub(super) fn object_properties(schema: &Value) -> Option<Cow<'_, Map<String, Value>>> {
    properties_at(schema, 0)
}

fn properties_at(schema: &Value, depth: u32) -> Option<Cow<'_, Map<String, Value>>> {
    let object = |b: &Value| is_type(b, "object") || b.get("properties").is_some() || b.get("allOf").is_some();
    let own = schema.get("properties").and_then(Value::as_object).map(Cow::Borrowed);
    let parts = schema.get("allOf").and_then(Value::as_array).filter(|_| depth <= 4).into_iter().flatten();
    let mut found = own.into_iter().chain(parts.filter_map(|part| properties_at(part, depth + 1)));
    match (found.next(), found.next()) {
        (Some(one), None) => Some(one),
        (Some(first), Some(second)) => {
            // The first declaration of a name stands (as `form_properties` reads).
            let mut all = first.into_owned();
            for more in std::iter::once(second).chain(found) {
                for (name, property) in more.iter() {
                    all.entry(name.clone()).or_insert_with(|| property.clone());
                }
            }
            Some(Cow::Owned(all))
        }
        (None, _) if depth <= 4 => ["anyOf", "oneOf"]
            .iter()
            .filter_map(|k| schema.get(*k).and_then(Value::as_array))
            .flatten()
            .filter(|branch| object(branch))
            .find_map(|branch| properties_at(branch, depth + 1)),
        (None, _) => None,
    }
}

/// An object schema's `additionalProperties` schema, also in a branch
/// (Stripe's `currency_options: anyOf [ {object of objects}, enum [""] ]`).
pub(super) fn object_additional(schema: &Value) -> Option<&Value> {
    let object = |b: &Value| is_type(b, "object") || b.get("properties").is_some();
    from_branches(schema, 0, &|s| s.get("additionalProperties").filter(|a| a.is_object()), &object)
}

/// An array schema's `items`, also where the array is a branch
/// (`anyOf: [ { type: array, items: { type: integer } }, { type: "null" } ]`,
/// FastAPI's `Optional[list[int]]`): the elements are read as its items.
pub(super) fn array_items(schema: &Value) -> Option<&Value> {
    from_branches(schema, 0, &|s| s.get("items"), &|b| is_type(b, "array"))
}

/// What `take` finds in `schema`, or in the first of its `anyOf`, `oneOf`
/// and `allOf` branches (a few levels deep) that `fits`.
fn from_branches<'s, T>(
    schema: &'s Value,
    depth: u32,
    take: &impl Fn(&'s Value) -> Option<T>,
    fits: &impl Fn(&Value) -> bool,
) -> Option<T> {
    if let Some(found) = take(schema) {
        return Some(found);
    }
    if depth > 4 {
        return None;
    }
    ["anyOf", "oneOf", "allOf"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(Value::as_array))
        .flatten()
        .filter(|branch| fits(branch))
        .find_map(|branch| from_branches(branch, depth + 1, take, fits))
}

/// One string as the schema's scalar type, when it reads as one.
pub(super) fn scalar(raw: &str, schema: &Value) -> Value {
    if is_type(schema, "integer") {
        if let Ok(n) = raw.parse::<i64>() {
            return n.into();
        }
        if let Ok(n) = raw.parse::<u64>() {
            return n.into();
        }
    }
    // An integer parameter is written in digits: `5.0` and `1e1` are
    // integers to JSON Schema, but not to the `Atoi`/`parseInt` of the
    // service behind (they stay strings here, and fail the type). Digits
    // beyond 64 bits are read as a number, to fail its range.
    let digits = |s: &str| {
        let d = s.strip_prefix(['-', '+']).unwrap_or(s);
        !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
    };
    if (is_type(schema, "number") || (is_type(schema, "integer") && digits(raw)))
        && let Some(n) = raw.parse::<f64>().ok().filter(|f| f.is_finite()).and_then(serde_json::Number::from_f64)
    {
        return Value::Number(n);
    }
    if is_type(schema, "boolean") {
        match raw {
            "true" => return true.into(),
            "false" => return false.into(),
            _ => {}
        }
    }
    // An empty value is null only where nothing else may be read from it:
    // `?limit=` for `[integer, null]` is no integer to the service
    // (FastAPI, `Atoi`), and OpenAPI allows empty values only by
    // `allowEmptyValue`.
    if raw.is_empty() && is_type(schema, "null") && !SCALARS.iter().any(|t| is_type(schema, t)) {
        return Value::Null;
    }
    Value::String(raw.to_string())
}

/// `application/x-www-form-urlencoded` pairs, decoded (`+` is a space).
///
/// Read as both kinds of parser read them: `;` separates parameters too
/// for some servers (Rack before 3, Perl's CGI, Python before 3.9.2, Go
/// before 1.17), so `tags=x;limit=1000` is also `limit=1000`, and that
/// pair is checked as well (it went to such a service unchecked: parameter
/// cloaking). A piece after a `;` without `=` names nothing checked.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    pairs(query, true)
}

/// `query_pairs` read at `&` alone: a form body's fields, and the names a
/// query sends.
pub fn ampersand_pairs(body: &str) -> Vec<(String, String)> {
    pairs(body, false)
}

fn pairs(text: &str, semicolons: bool) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        pairs.push((decode(k), decode(v)));
        if semicolons {
            pairs.extend(cloaked_in(pair));
        }
    }
    pairs
}

/// The pairs after each `;` of one `&`-separated piece, decoded.
fn cloaked_in(piece: &str) -> impl Iterator<Item = (String, String)> + '_ {
    piece.split(';').skip(1).filter_map(|p| p.split_once('=')).map(|(k, v)| (decode(k), decode(v)))
}

/// The values of cookie `name` in the request's `Cookie` fields
/// (`a=1; b=2`), percent-decoded. Read as both kinds of parser read them:
/// `a=1,sess=x` is the cookie `a` for RFC 6265 and also the cookie `sess`
/// for the older ones that separate with `,` (RFC 2109), so `sess` is
/// found (and checked) there too.
pub fn cookie_values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    let lines = cookie_lines(headers);
    let pairs = lines.iter().flat_map(|v| v.split(';')).filter_map(|pair| pair.split_once('='));
    let mut values = Vec::new();
    for (k, v) in pairs {
        // `sess =x`: whitespace around the name and value is not part of
        // them for the services that read cookies leniently.
        if k.trim() == name {
            values.push(decode_path(v.trim().trim_matches('"')));
        }
        let after_commas = v.split(',').skip(1).filter_map(|piece| piece.split_once('='));
        values.extend(
            after_commas.filter(|(k, _)| k.trim() == name).map(|(_, v)| decode_path(v.trim().trim_matches('"'))),
        );
    }
    values
}

/// The cookie names in the request's `Cookie` fields, as `cookie_values`
/// reads them (after `;`, and after `,` for the older parsers), trimmed:
/// each as written and percent-decoded (some frameworks decode names).
pub fn cookie_names(headers: &http::HeaderMap) -> Vec<(String, String)> {
    let mut names = Vec::new();
    let both = |k: &str| (k.trim().to_string(), decode_path(k.trim()));
    for pair in cookie_lines(headers).iter().flat_map(|v| v.split(';')) {
        let Some((k, v)) = pair.split_once('=') else { continue };
        names.push(both(k));
        names.extend(v.split(',').skip(1).filter_map(|piece| piece.split_once('=')).map(|(k, _)| both(k)));
    }
    names
}

/// The request's `Cookie` fields, bytes past ASCII read as UTF-8 (the
/// rest as U+FFFD): one such byte anywhere hid every cookie of the field
/// from validation.
fn cookie_lines(headers: &http::HeaderMap) -> Vec<std::borrow::Cow<'_, str>> {
    headers.get_all(http::header::COOKIE).iter().map(|v| String::from_utf8_lossy(v.as_bytes())).collect()
}

/// A path segment's value, percent-decoded (`+` stays a plus).
pub fn decode_path(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

/// Whether some framework reads the name a client `sent` as the declared
/// `name` though the two differ: in another case (ASP.NET), with brackets
/// after it (PHP, Rails and `qs` read `page[]` and `page[0]` as `page`,
/// and `ids` as `ids[]`), or as PHP reads names: leading spaces dropped,
/// `.` and space as `_` before the first bracket (`$_GET['a_b']` for `a.b`,
/// `$_POST['role']` for ` role`).
pub fn read_as(sent: &str, name: &str) -> bool {
    let base = name.strip_suffix("[]").unwrap_or(name);
    let alike = |k: &str| {
        k != name
            && (k.eq_ignore_ascii_case(name)
                // `role[` is PHP's `role_`, not `role`: a bracket that closes.
                || k.strip_prefix(base).is_some_and(|rest| rest.is_empty() || rest.starts_with('[') && rest.contains(']'))
                // `USER[role]` (ASP.NET ignores case) and `user.role`
                // (ASP.NET's own nesting) for `user`.
                || other_case_head(k, base)
                || k.strip_prefix(base).is_some_and(|rest| rest.len() > 1 && rest.starts_with('.')))
    };
    // PHP ends a name at a NUL (`limit%00x` is its `limit`) and drops leading spaces.
    let trimmed = sent.split('\0').next().unwrap_or("").trim_start_matches(' ');
    // PHP turns `.` and spaces before the first bracket into `_`; a bracket
    // that never closes becomes `_` itself, and the rest stays as it is.
    let php: String = match trimmed.find('[') {
        Some(i) if !trimmed[i..].contains(']') => trimmed[..i].replace(['.', ' '], "_") + "_" + &trimmed[i + 1..],
        Some(i) => trimmed[..i].replace(['.', ' '], "_") + &trimmed[i..],
        None => trimmed.replace(['.', ' '], "_"),
    };
    alike(sent) || (php != sent && (php == name || alike(&php)))
}

/// A problem for a parameter, field or cookie name (decoded) holding a
/// control character: PHP cuts a name at a NUL (`limit%00=500` is its
/// `limit`, overwriting the checked one), and no name needs one.
pub fn control_in_name(place: &'static str, name: &str, pointer: String) -> Option<Problem> {
    name.chars().any(char::is_control).then(|| {
        let detail = format!("`{}` has a control character in its name", name.escape_default());
        Problem { place, pointer, detail }
    })
}

/// Whether `sent`'s name before its first `[` or `.` is `base` in another case.
pub fn other_case_head(sent: &str, base: &str) -> bool {
    let head = sent.split(['[', '.']).next().unwrap_or(sent);
    head.len() < sent.len() && head != base && head.eq_ignore_ascii_case(base)
}

/// The properties a form body's fields are read by: the schema's own and
/// those of what its `$ref`s, `allOf` parts and `anyOf`/`oneOf` branches lead to (an OpenAPI form
/// body is often `$ref: '#/components/schemas/Pet'`), each with its own
/// same-document `$ref` (and its `items`') followed, so that `id` is read
/// as the integer and `tags` as the array they are declared as.
pub fn form_properties(schema: &Value) -> Map<String, Value> {
    let mut properties = Map::new();
    let index = Index::of(schema);
    collect_properties(&mut Collect { index: &index, budget: INLINED_NODES }, schema, &mut properties, 0);
    properties
}

/// How many `$ref`s and `allOf`s deep properties are looked for (a cycle stops there).
const MAX_REF_DEPTH: usize = 16;

/// What collecting a form's properties reads, and the nodes it may still make.
struct Collect<'i, 'a> {
    index: &'i Index<'a>,
    budget: usize,
}

fn collect_properties<'a>(cx: &mut Collect<'_, 'a>, schema: &'a Value, out: &mut Map<String, Value>, depth: usize) {
    if depth > MAX_REF_DEPTH {
        return;
    }
    if let Some(own) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in own {
            if !out.contains_key(name) {
                let declared = follow(cx.index, property);
                // Its own references put in place, at every level of it
                // (`user[profile][age]` where `profile` is a `$ref`).
                let mut property = inlined(declared, cx.index, 0, &mut cx.budget);
                // An object composed with `allOf` (`allOf: [ {$ref: Base}, {properties…} ]`,
                // OpenAPI's usual inheritance): read as the object it is, its members
                // by the parts' properties (`user[role]=x` was refused as a plain field).
                if declared.get("type").is_none() && declared.get("allOf").is_some() {
                    let mut members = Map::new();
                    collect_properties(cx, declared, &mut members, depth + 1);
                    if !members.is_empty() {
                        property = serde_json::json!({ "type": "object", "properties": members });
                    }
                }

                out.insert(name.clone(), property);
            }
        }
    }
    if let Ok(Some(target)) = cx.index.target(schema) {
        collect_properties(cx, target, out, depth + 1);
    }
    let parts = || schema.get("allOf").and_then(Value::as_array).into_iter().flatten();
    // The `then`/`else` of this schema and of its `allOf` parts are
    // alternatives too (an OpenAPI discriminator becomes one `if`/`then`
    // per subtype): taken together before the parts one by one, so that
    // a field two subtypes declare differently stays text.
    let conditional: Vec<&'a Value> = std::iter::once(schema)
        .chain(parts())
        .flat_map(|s| ["then", "else"].into_iter().filter_map(move |k| s.get(k)))
        .collect();
    alternatives(cx, conditional, out, depth);
    for part in parts() {
        collect_properties(cx, part, out, depth + 1);
    }
    for key in ["anyOf", "oneOf"] {
        alternatives(cx, schema.get(key).and_then(Value::as_array).into_iter().flatten().collect(), out, depth);
    }
}

/// Alternatives: a field they declare alike is read as declared; one
/// they declare differently (`n` an integer in one, text in another)
/// stays text, as before, not the first branch's type.
fn alternatives<'a>(cx: &mut Collect<'_, 'a>, branches: Vec<&'a Value>, out: &mut Map<String, Value>, depth: usize) {
    let mut seen: Map<String, Value> = Map::new();
    for part in branches {
        let mut branch = Map::new();
        collect_properties(cx, part, &mut branch, depth + 1);
        for (name, property) in branch {
            match seen.get(&name) {
                Some(known) if *known != property => {
                    seen.insert(name, Value::Object(Map::new()));
                }
                Some(_) => {}
                None => {
                    seen.insert(name, property);
                }
            }
        }
    }
    for (name, property) in seen {
        out.entry(name).or_insert(property);
    }
}

/// `schema`, or what its chain of `$ref`s ends at.
fn follow<'a>(index: &Index<'a>, mut schema: &'a Value) -> &'a Value {
    for _ in 0..MAX_REF_DEPTH {
        match index.target(schema) {
            Ok(Some(target)) => schema = target,
            _ => break,
        }
    }
    schema
}

/// A form body as an object: each field read as its property's type. A
/// field sent more than once is an array where its property is one; where
/// it is not, a problem (`given 2 times`, as for a query parameter: the
/// gateway would check one and the service might read the other).
pub fn form_object(bytes: &[u8], properties: &Map<String, Value>, problems: &mut Vec<Problem>) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let pairs = ampersand_pairs(&text);
    // As a JSON body's `max_entries`: a form of 300,000 tiny fields is
    // ~150 MB of names and values once read (nothing a form needs).
    if pairs.len() > MAX_FORM_FIELDS {
        let detail = format!("more than {MAX_FORM_FIELDS} fields");
        problems.push(Problem { place: "body", pointer: String::new(), detail });
        return Value::Object(Map::new());
    }
    let pairs_len = pairs.len();
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in pairs {
        problems.extend(control_in_name("body", &k, format!("/{}", super::pointer_token(&k))));
        fields.entry(k).or_default().push(v);
    }
    // Python before 3.9.2 (and Django on it), Go before 1.17 and Perl's
    // CGI split a form body at `;` too: `name=a;qty=11` is also `qty=11`
    // to them. Such a pair is checked where it names a declared field (as
    // in a query); elsewhere a `;` is part of a value (`note=a;b`).
    let mut counted = pairs_len;
    for piece in text.split('&') {
        for (k, v) in cloaked_in(piece).filter(|(k, _)| properties.contains_key(k)) {
            // They count against the same limit (20,000 `;qty=1` were read).
            counted += 1;
            if counted > MAX_FORM_FIELDS {
                let detail = format!("more than {MAX_FORM_FIELDS} fields");
                problems.push(Problem { place: "body", pointer: String::new(), detail });
                return Value::Object(Map::new());
            }
            fields.entry(k).or_default().push(v);
        }
    }
    // `tags[]=a&tags[]=b` for a declared array `tags` (and no `tags` beside
    // it): the array as PHP, Rails and `qs` read it (see `bracket_spelling`).
    let bracketed: Vec<String> = fields
        .keys()
        .filter(|k| !properties.contains_key(*k))
        .filter(|k| {
            k.strip_suffix("[]").is_some_and(|base| {
                !fields.contains_key(base) && properties.get(base).is_some_and(|s| is_type(s, "array"))
            })
        })
        .cloned()
        .collect();
    for k in bracketed {
        let values = fields.remove(&k).unwrap_or_default();
        fields.insert(k[..k.len() - 2].to_string(), values);
    }
    // `user[email]=a`, `tax_ids[0][type]=vat`: the declared object or array they build.
    let nested = super::form_nesting::nest(&mut fields, properties, problems);
    // `role=user&role[]=admin`: PHP's `$_POST['role']` is `['admin']`, unchecked.
    for k in fields.keys().filter(|k| !properties.contains_key(*k) && !k.chars().any(char::is_control)) {
        if let Some(name) = properties.keys().find(|name| read_as(k, name)) {
            let detail = format!(
                "`{}` is read as the field `{name}` by some frameworks (case, brackets, PHP's `.` and spaces): send it once, as `{name}`",
                super::cut(k)
            );
            problems.push(Problem { place: "body", pointer: format!("/{}", super::pointer_token(k)), detail });
        }
    }
    let object = fields
        .into_iter()
        .map(|(k, vs)| {
            let schema = properties.get(&k).unwrap_or(&Value::Null);
            let values: Vec<&str> = vs.iter().map(String::as_str).collect();
            let value = if values.len() > 1 && !is_type(schema, "array") {
                let detail = format!("given {} times where one value is expected", values.len());
                problems.push(Problem { place: "body", pointer: format!("/{}", super::pointer_token(&k)), detail });
                read(&values[..1], schema)
            } else {
                read(&values, schema)
            };
            (k, value)
        })
        .chain(nested)
        .collect();
    Value::Object(object)
}

/// Whether a `POST`'s query holds a `_method` parameter naming another
/// method (Symfony and Laravel read it from the query as from a form
/// body; PHP reads `.method` and ` _method` as `_method` too). Only
/// queries that mention `method` are parsed.
pub fn query_overrides_method(query: &str) -> bool {
    // In any case (`_METHOD`: `read_as` reads another case as the name).
    if !query.as_bytes().windows(6).any(|w| w.eq_ignore_ascii_case(b"method"))
        && memchr::memmem::find(query.as_bytes(), b"%").is_none()
    {
        return false;
    }
    query_pairs(query).iter().any(|(k, v)| {
        (k == "_method" || read_as(k, "_method")) && !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("POST")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nodes(v: &Value) -> usize {
        1 + match v {
            Value::Object(m) => m.values().map(nodes).sum(),
            Value::Array(a) => a.iter().map(nodes).sum(),
            _ => 0,
        }
    }

    /// References put in place for reading stop at a budget: forty
    /// properties each referring to a type of forty made 40^4 copies
    /// (seconds and gigabytes to load a config). Past it, a reference is
    /// still put in place one level deep, and a large schema's own nodes
    /// cost nothing (a form of 20,000 enum values lost its later types).
    #[test]
    fn references_put_in_place_are_bounded() {
        let names: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        let properties: Map<String, Value> =
            names.iter().map(|n| (n.clone(), json!({ "$ref": format!("#/$defs/{n}") }))).collect();
        let defs: Map<String, Value> =
            names.iter().map(|n| (n.clone(), json!({ "type": "object", "properties": properties.clone() }))).collect();
        let schema = json!({ "type": "object", "properties": properties, "$defs": defs });
        let shape = inlined(&schema, &Index::of(&schema), 0, &mut INLINED_NODES.clone());
        assert!(nodes(&shape) <= INLINED_NODES + nodes(&schema), "{}", nodes(&shape));
        // A small schema is put in place whole.
        let small = json!({ "properties": { "a": { "$ref": "#/$defs/n" } }, "$defs": { "n": { "type": "integer" } } });
        let shape = inlined(&small, &Index::of(&small), 0, &mut INLINED_NODES.clone());
        assert_eq!(shape, json!({ "properties": { "a": { "type": "integer" } } }));
        let shape = inlined(&small, &Index::of(&small), 0, &mut 0);
        assert_eq!(shape, json!({ "properties": { "a": { "type": "integer" } } }), "one level past the budget");
        let values: Vec<Value> = (0..30_000).map(Value::from).collect();
        let large = json!({ "properties": { "e": { "enum": values }, "n": { "items": { "$ref": "#/$defs/n" } } },
                            "$defs": { "n": { "type": "integer" } } });
        let shape = inlined(&large, &Index::of(&large), 0, &mut INLINED_NODES.clone());
        assert_eq!(shape["properties"]["n"], json!({ "items": { "type": "integer" } }));
    }
}

//! Every structural problem of a config at once. serde stops at the first
//! wrong key or type; when it does, the document is read again as plain
//! YAML and checked against the gateway's own JSON Schema (the one
//! `portcullis schema` gives editors), which reports them all. The
//! offending nodes are then cut out, so that the rest can still be
//! compiled and its semantic problems reported in the same run.
//!
//! Only a config that serde refused comes here: a valid config never
//! meets the schema, so a place where the two differ can add a problem to
//! a broken file, never refuse a good one (and a test holds the schema to
//! every example).

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::{ConfigError, Locations};

/// Stands for a `${NAME}` that is not set, so that the document can be
/// read whole and each one reported where it is.
const UNSET: &str = "\u{0}portcullis-unset:";
/// Stands for a variable set to the empty string: YAML would read an empty
/// plain value as `null`, the gateway's own reading gives empty text.
const EMPTY: &str = "\u{0}portcullis-empty";

/// The config's JSON Schema, made once.
fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(super::json_schema)
}

fn validator() -> Option<&'static jsonschema::Validator> {
    static VALIDATOR: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    VALIDATOR.get_or_init(|| jsonschema::validator_for(schema()).ok()).as_ref()
}

/// The schemas the node at `pointer` (a JSON pointer into the document)
/// may be: `$ref`s and `anyOf`/`oneOf`/`allOf` resolved.
fn nodes_at<'a>(root: &'a Value, pointer: &str) -> Vec<&'a Value> {
    fn expand<'a>(root: &'a Value, node: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
        if depth > 16 {
            return;
        }
        if let Some(r) = node.get("$ref").and_then(Value::as_str)
            && let Some(target) = r.strip_prefix('#').and_then(|p| root.pointer(p))
        {
            expand(root, target, out, depth + 1);
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            for branch in node.get(key).and_then(Value::as_array).into_iter().flatten() {
                expand(root, branch, out, depth + 1);
            }
        }
        out.push(node);
    }
    let mut nodes = Vec::new();
    expand(root, root, &mut nodes, 0);
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        let mut next = Vec::new();
        for n in &nodes {
            let child = if segment.bytes().all(|b| b.is_ascii_digit()) {
                n.get("items")
            } else {
                n.get("properties")
                    .and_then(|p| p.get(&segment))
                    .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
            };
            if let Some(child) = child {
                expand(root, child, &mut next, 0);
            }
        }
        nodes = next;
    }
    nodes
}

/// The keys a mapping at `pointer` may have, for "did you mean".
fn allowed_keys(root: &Value, pointer: &str) -> Vec<String> {
    let mut keys: Vec<String> = nodes_at(root, pointer)
        .iter()
        .filter_map(|n| n.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// For a value of the wrong type where a unit goes (`shutdown_timeout:
/// 10`, a number where a duration is text): what its unit's parser says
/// of it, as `check` says it when the key is read.
fn unit_explained(pointer: &str, value: &Value) -> Option<String> {
    let text = Value::String(match value {
        Value::Number(n) => n.to_string(),
        _ => return None,
    });
    nodes_at(schema(), pointer)
        .iter()
        .filter_map(|n| n.get("pattern").and_then(Value::as_str))
        .find_map(|pattern| super::units::explain(pattern, &text))
}

/// The problems the schema finds in `text` (each located, in our words),
/// and the document without the nodes they are in (`None` when the text
/// is not even YAML).
pub fn problems(text: &str, file: &str, locations: &Locations) -> (Vec<ConfigError>, Option<Value>) {
    let mut properties: HashMap<String, String> = super::environment()
        .into_iter()
        .map(|(k, v)| if v.is_empty() { (k.clone(), format!("{EMPTY}{k}\u{0}")) } else { (k, v) })
        .collect();
    for name in variables(text) {
        properties.entry(name.to_string()).or_insert_with(|| format!("{UNSET}{name}"));
    }
    // The last of two equal keys, so that a duplicate (reported from the
    // index) does not hide every other problem.
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
    }
    .with_properties(properties);
    let Ok(mut doc) = serde_saphyr::from_str_with_options::<Value>(text, options) else {
        return (Vec::new(), None);
    };
    let mut found: Vec<(String, String)> = Vec::new();
    // The stand-in fills `${NAME:-text}` too (a variable is set or not for
    // the whole file): where the line gives a default, the default goes
    // in its place; only a bare `${NAME}` lacks a value.
    let mut defaulted: Vec<(String, String)> = Vec::new();
    let mut emptied: Vec<(String, String)> = Vec::new();
    super::for_each_string(&doc, &mut |path, s| {
        if s.contains(EMPTY) {
            // `${NAME:-text}` gives `text` for an empty NAME; `${NAME}` and
            // `${NAME-text}` give nothing.
            let line = locations.find(path).and_then(|(l, _)| text.lines().nth(l.saturating_sub(1))).unwrap_or("");
            let mut value = s.to_string();
            while let Some(at) = value.find(EMPTY) {
                let rest = &value[at + EMPTY.len()..];
                let name = rest.split('\u{0}').next().unwrap_or("").to_string();
                let open = format!("${{{name}:-");
                let default = line
                    .find(&open)
                    .and_then(|start| line[start + open.len()..].split('}').next())
                    .unwrap_or("")
                    .to_string();
                value.replace_range(at..at + EMPTY.len() + name.len() + 1, &default);
            }
            emptied.push((path.to_string(), value));
        }
        if let Some(at) = s.find(UNSET) {
            let name: String =
                s[at + UNSET.len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let line = locations.find(path).and_then(|(l, _)| text.lines().nth(l.saturating_sub(1))).unwrap_or("");
            match default_in(line, &name) {
                Some(default) if !line.contains(&format!("${{{name}}}")) => {
                    defaulted.push((path.to_string(), s.replace(&format!("{UNSET}{name}"), default)));
                }
                _ => found.push((path.to_string(), format!("environment variable `{name}` is not set"))),
            }
        }
    });
    for (path, value) in emptied {
        if let Some(node) = steps(&path).as_deref().and_then(|st| node_mut(&mut doc, st)) {
            // Empty stays text; a default is typed as a plain scalar (`8080` a number).
            *node = match value.is_empty() {
                true => Value::String(value),
                false => serde_saphyr::from_str::<Value>(&value).unwrap_or(Value::String(value)),
            };
        }
    }
    for (path, value) in defaulted {
        if let Some(node) = steps(&path).as_deref().and_then(|st| node_mut(&mut doc, st)) {
            // Typed as the library types a plain scalar (`8080` a number, `1MiB` text).
            *node = serde_saphyr::from_str::<Value>(&value).unwrap_or(Value::String(value));
        }
    }
    if let Some(validator) = validator() {
        for e in validator.iter_errors(&doc) {
            collect(&e, &mut found);
        }
    }
    // Cut out every node a problem is in (deepest first), keeping the rest.
    let mut cut: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    cut.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in cut {
        remove(&mut doc, path);
    }
    let errors = found
        .into_iter()
        .map(|(path, message)| {
            let position = locations.find(&path);
            let line = position.and_then(|(l, _)| text.lines().nth(l.saturating_sub(1))).unwrap_or("");
            let message = without_environment_values(message, line);
            ConfigError { file: file.to_string(), position, path, message }
        })
        .collect();
    (errors, Some(doc))
}

/// One schema error as problems: an unknown key each, and for `anyOf`
/// (an optional value, a size that is a number or a text) the errors of
/// the branch whose shape the value has, which say what is wrong inside.
fn collect(e: &jsonschema::ValidationError<'_>, found: &mut Vec<(String, String)>) {
    let at = config_path(e.instance_path().as_str());
    match e.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let allowed = allowed_keys(schema(), e.instance_path().as_str());
            for key in unexpected {
                let message = match super::nearest_key(key, allowed.iter().map(String::as_str)) {
                    // Allowed here, but not beside another key (a second kind of provider).
                    Some(meant) if meant == key => {
                        format!("`{key}` cannot be here as well: a mapping here has one of these keys, not two")
                    }
                    Some(meant) => format!("unknown field `{key}`: did you mean `{meant}`?"),
                    None => format!("unknown field `{key}`"),
                };
                found.push((join(&at, key), message));
            }
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            let same_place =
                |b: &jsonschema::ValidationError<'_>| b.instance_path().as_str() == e.instance_path().as_str();
            // The `${NAME}` alternative the editor schema adds says nothing useful.
            let variable = |b: &jsonschema::ValidationError<'_>| matches!(b.kind(), ValidationErrorKind::Pattern { pattern } if pattern == super::VARIABLE_PATTERN);
            let branches: Vec<_> = context.iter().filter(|branch| !branch.iter().all(variable)).collect();
            // The branch whose shape the value has (no type error here),
            // and among mappings the one whose keys it has (no missing or
            // unknown key here: `introspection:` with a bad value is no
            // `jwt:` provider missing its key). None has the value's
            // shape: the first says what was meant (the original type
            // comes before `null` and `${NAME}`).
            let misfit = |branch: &&&Vec<jsonschema::ValidationError<'_>>| {
                let here =
                    |kind: fn(&ValidationErrorKind) -> bool| branch.iter().any(|b| same_place(b) && kind(b.kind()));
                let wrong_type = here(|k| matches!(k, ValidationErrorKind::Type { .. }));
                let wrong_keys = here(|k| {
                    matches!(k, ValidationErrorKind::Required { .. } | ValidationErrorKind::AdditionalProperties { .. })
                });
                (wrong_type, wrong_keys)
            };
            let shaped = branches.iter().min_by_key(misfit);
            match shaped {
                Some(branch) if !branch.is_empty() => branch.iter().for_each(|b| collect(b, found)),
                _ => found.push((at, message(e.kind(), e.instance()))),
            }
        }
        ValidationErrorKind::Type { .. }
            if let Some(why) = unit_explained(e.instance_path().as_str(), e.instance()) =>
        {
            found.push((at, why));
        }
        // The gateway reads a plain number or boolean as text where text is
        // expected (`name: 1`, `body: 123`), and so does an empty `${VAR}`
        // (YAML's reading of it here is `null`): not a problem.
        ValidationErrorKind::Type { kind: TypeKind::Single(t) }
            if t.to_string() == "string" && matches!(e.instance().as_ref(), Value::Number(_) | Value::Bool(_)) => {}
        kind => found.push((at, message(kind, e.instance()))),
    }
}

/// Mistakes with `${NAME}` that the YAML library passes in silence, as
/// (line, column, what is wrong), 1-based: a `${NAME` without a `}` after
/// it in a plain scalar (`${NAME:-text` too: the library leaves it as
/// text, so `token: ${ADMIN_TOKEN` would make the token those characters),
/// and a `${NAME}` in a key (keys are never read from the environment:
/// an upstream would be named `${UPSTREAM}`). Only plain scalars are read
/// for variables (quoted and block scalars stay as written: a `body: |` of
/// shell code is no mistake), and `$$` is a literal `$`.
pub fn variable_mistakes(text: &str) -> Vec<(usize, usize, String)> {
    use granit_parser::{Event, Parser, ScalarStyle};
    let mut found = Vec::new();
    // Per open collection: `Some(true)` for a mapping whose next node is a key.
    let mut open: Vec<Option<bool>> = Vec::new();
    for item in Parser::new_from_str(text) {
        // A syntax error is the deserializer's to report.
        let Ok((event, span)) = item else { break };
        let is_node =
            matches!(event, Event::Scalar(..) | Event::Alias(..) | Event::MappingStart(..) | Event::SequenceStart(..));
        let is_key = is_node && matches!(open.last(), Some(Some(true)));
        if is_node && let Some(Some(next_is_key)) = open.last_mut() {
            *next_is_key = !*next_is_key;
        }
        match event {
            Event::MappingStart(..) => open.push(Some(true)),
            Event::SequenceStart(..) => open.push(None),
            Event::MappingEnd | Event::SequenceEnd => {
                open.pop();
            }
            Event::Scalar(value, ScalarStyle::Plain, ..) => {
                let at = (span.start.line(), span.start.col() + 1);
                for (name, closed) in plain_variables(&value) {
                    // Read as not set (a default after `:-` stood in for it
                    // unsaid, a dev secret for the real one): said instead.
                    if std::env::var_os(name).is_some_and(|v| v.to_str().is_none()) {
                        found.push((
                            at.0,
                            at.1,
                            format!(
                                "environment variable `{name}` is set, but not to UTF-8 text: the config reads \
                             variables as UTF-8 (a default would stand in for it)"
                            ),
                        ));
                    }
                    if !closed {
                        found.push((at.0, at.1, format!(
                            "`${{{name}` has no closing `}}`: it would be taken as text, not the environment variable; \
                             write `${{{name}}}` (a `#` after a space starts a comment, so a default with one is cut there)"
                        )));
                    } else if is_key {
                        found.push((at.0, at.1, format!(
                            "`${{{name}}}` in a key is not read from the environment (keys are names written in the \
                             file): write the name itself"
                        )));
                    }
                }
            }
            _ => {}
        }
    }
    found
}

/// The `${NAME…}` a plain scalar's text names (`$$` is a literal `$`), and
/// whether a `}` follows each.
fn plain_variables(value: &str) -> Vec<(&str, bool)> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        let after = &rest[at + 1..];
        if let Some(next) = after.strip_prefix('$') {
            rest = next;
            continue;
        }
        rest = after;
        let Some(inner) = after.strip_prefix('{') else { continue };
        let len = inner.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(inner.len());
        if len > 0 && !inner.as_bytes()[0].is_ascii_digit() {
            names.push((&inner[..len], closes(&inner[len..])));
        }
    }
    names
}

/// `message` about `line` with the value of each `${NAME}` the line reads
/// written back as `${NAME}`: a problem with a value from the environment
/// (perhaps a secret set in the wrong place) never shows that value, in
/// `check`'s output, a refused reload's answer or the log.
pub fn without_environment_values(mut message: String, line: &str) -> String {
    for (_, name, closed) in line_variables(line) {
        // Values of a few characters are no secret, and written back
        // everywhere they would garble the message (`0` in `8080`).
        if let Some(value) = std::env::var(name).ok().filter(|v| closed && v.len() >= MIN_HIDDEN)
            && message.contains(&value)
        {
            message = message.replace(&value, &format!("${{{name}}}"));
        }
    }
    message
}

/// Whether the text after a `${NAME` holds its closing `}`: a default may
/// hold `${…}`s of its own, each closed by one `}` (`${A:-${B}}` is closed,
/// `${A:-${B}` is not: the reader takes the outer one as text).
fn closes(after_name: &str) -> bool {
    let mut depth = 1usize;
    let mut rest = after_name;
    while let Some(at) = rest.find(['$', '}']) {
        if rest[at..].starts_with("${") {
            depth += 1;
            rest = &rest[at + 2..];
            continue;
        }
        if rest[at..].starts_with('}') {
            depth -= 1;
            if depth == 0 {
                return true;
            }
        }
        rest = &rest[at + 1..];
    }
    false
}

/// The shortest environment value hidden in a config problem.
const MIN_HIDDEN: usize = 4;

/// Whether a line reads the environment: a `${NAME}` the library replaces
/// (not in quotes, not in a comment).
pub fn reads_environment(line: &str) -> bool {
    line_variables(line).iter().any(|&(_, _, closed)| closed)
}

/// The `${NAME…` of a line that the library reads (byte offset, name,
/// whether its `}` follows). Quoted text (always literal) and comments
/// (from a `#` at a line's start or after a space) are skipped, and so is
/// a `}` inside a comment: `${A:-x #y}` ends at the `#`.
fn line_variables(line: &str) -> Vec<(usize, &str, bool)> {
    let code = &line[..comment_start(line)];
    let mut found = Vec::new();
    let mut quote = None;
    let mut escaped = false;
    for (at, c) in code.char_indices() {
        if std::mem::take(&mut escaped) {
            continue;
        }
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            // `$$` is one literal `$`: `$${NAME` is text.
            (None, '$') if code[at..].starts_with("$$") => escaped = true,
            (None, '$') if code[at..].starts_with("${") => {
                let rest = &code[at + 2..];
                let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
                if len == 0 || rest.as_bytes()[0].is_ascii_digit() {
                    continue;
                }
                let after = &rest[len..];
                let closed =
                    after.starts_with('}') || (after.starts_with(":-") || after.starts_with('-')) && closes(after);
                found.push((at, &rest[..len], closed));
            }
            _ => {}
        }
    }
    found
}

/// Where a line's comment starts (its length if it has none).
fn comment_start(line: &str) -> usize {
    let mut quote = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '#') if previous == ' ' || previous == '\t' => return i,
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            _ => {}
        }
        previous = c;
    }
    line.len()
}

/// The names of `${NAME}`s in the text.
fn variables(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    for (at, _) in text.match_indices("${") {
        let rest = &text[at + 2..];
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if len > 0 && rest[len..].starts_with('}') {
            names.push(&rest[..len]);
        }
    }
    names
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_string() } else { format!("{parent}.{key}") }
}

/// `/routes/0/match` as `routes[0].match`.
fn config_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            out = join(&out, &segment);
        }
    }
    out
}

/// Removes the node at a config path (the key from its mapping; a list
/// item goes with its whole list, so that the others keep their indices).
/// The keys and indices of a config path (`routes[0].match.path`).
fn steps(path: &str) -> Option<Vec<Result<String, usize>>> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let mut part = part;
        let key_end = part.find('[').unwrap_or(part.len());
        if key_end > 0 {
            steps.push(Ok(part[..key_end].to_string()));
        }
        part = &part[key_end..];
        while let Some(rest) = part.strip_prefix('[') {
            let end = rest.find(']')?;
            steps.push(Err(rest[..end].parse().ok()?));
            part = &rest[end + 1..];
        }
    }
    Some(steps)
}

/// The node at `steps`, if it is there.
fn node_mut<'a>(doc: &'a mut Value, steps: &[Result<String, usize>]) -> Option<&'a mut Value> {
    let mut node = doc;
    for step in steps {
        node = match (step, node) {
            (Ok(k), Value::Object(m)) => m.get_mut(k)?,
            (Err(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(node)
}

/// Cuts the node at `path` out (up to its last key: the list it holds goes
/// whole if an item is bad); whether there was one.
pub(super) fn remove(doc: &mut Value, path: &str) -> bool {
    let Some(steps) = steps(path) else { return false };
    let Some(last_key) = steps.iter().rposition(|s| s.is_ok()) else { return false };
    if let (Ok(k), Some(Value::Object(m))) = (&steps[last_key], node_mut(doc, &steps[..last_key])) {
        return m.remove(k).is_some();
    }
    false
}

/// The default a line gives `${name:-text}` or `${name-text}`, if it does.
fn default_in<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = [format!("${{{name}:-"), format!("${{{name}-")]
        .into_iter()
        .find_map(|open| line.find(&open).map(|start| start + open.len()))?;
    line[at..].find('}').map(|end| &line[at..at + end])
}

/// What a schema keyword's failure means, in the words `check` uses.
fn message(kind: &ValidationErrorKind, value: &Value) -> String {
    let shown = match value {
        Value::String(s) => format!("`{s}`"),
        Value::Object(_) => "a mapping".into(),
        Value::Array(_) => "a list".into(),
        other => format!("`{other}`"),
    };
    match kind {
        ValidationErrorKind::Type { kind } => {
            let want = match kind {
                TypeKind::Single(t) => expected(&t.to_string()),
                // An optional key takes null too: not worth saying.
                TypeKind::Multiple(set) => set
                    .iter()
                    .map(|t| t.to_string())
                    .filter(|t| t != "null")
                    .map(|t| expected(&t))
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            format!("{shown}: expected {want}")
        }
        ValidationErrorKind::Required { property } => format!("missing field `{}`", property.as_str().unwrap_or("?")),
        ValidationErrorKind::Minimum { limit } => format!("{shown}: expected {limit} or more"),
        ValidationErrorKind::Maximum { limit } => format!("{shown}: expected {limit} or less"),
        ValidationErrorKind::Enum { options } => {
            let list: Vec<String> =
                options.as_array().into_iter().flatten().map(|o| o.to_string().replace('"', "`")).collect();
            format!("{shown}: expected one of {}", list.join(", "))
        }
        ValidationErrorKind::MinItems { limit } => format!("expected at least {limit} item(s)"),
        // A unit's own parser says what is wrong and how to write it.
        ValidationErrorKind::Pattern { pattern } => match super::units::explain(pattern, value) {
            Some(why) => why,
            None => format!("{shown} is not a value this key takes"),
        },
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            format!("{shown} is not a value this key takes")
        }
        _ => format!("{shown} is not allowed here"),
    }
}

fn expected(json_type: &str) -> String {
    match json_type {
        "integer" => "a whole number".into(),
        "number" => "a number".into(),
        "string" => "text".into(),
        "boolean" => "`true` or `false`".into(),
        "array" => "a list".into(),
        "object" => "a mapping".into(),
        "null" => "nothing".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_config_paths_and_nodes_are_cut() {
        assert_eq!(config_path("/routes/0/match/methods"), "routes[0].match.methods");
        assert_eq!(config_path(""), "");
        let mut doc = serde_json::json!({ "routes": [ { "name": "a", "bad": 1 } ], "x": { "y": [1, 2] } });
        remove(&mut doc, "routes[0].bad");
        remove(&mut doc, "x.y[1]");
        assert_eq!(doc, serde_json::json!({ "routes": [ { "name": "a" } ], "x": {} }));
        assert_eq!(variables("a: ${A}\nb: \"${B_2}\" ${} $C ${1x"), vec!["A", "B_2"]);
        let text = "a: ${A\nb: ${B:-x #y}\nc: ${C:-z} # ${D\nd: '${E' ${}\ne: \"x #${F\"\nf: ${G-h}${I}${1x\n\
                    g: |\n  echo ${arr[0]} ${x.y} ${V:=d}\nh: \"a\\\" ${X\"\ni: \"one\n  ${USER.name}\"\nj: ${x.y}\n";
        let unclosed =
            |t: &str| -> Vec<(usize, usize)> { variable_mistakes(t).into_iter().map(|(l, c, _)| (l, c)).collect() };
        assert_eq!(unclosed(text), vec![(1, 4), (2, 4)]);
        // A key is never read from the environment.
        let keys = variable_mistakes("upstreams:\n  ${UPN}:\n    targets: [ ${T} ]\n");
        assert_eq!(keys.len(), 1, "{keys:?}");
        assert!(keys[0].2.contains("`${UPN}` in a key"), "{keys:?}");
        assert!(reads_environment("secret: ${JWT_SECRET} # rotated") && reads_environment("a: x${B:-y}"));
        assert!(!reads_environment("secret: hunter2 # see ${JWT_SECRET}"));
        assert!(!reads_environment("secret: '${JWT_SECRET}'"), "quoted: literal");
        assert!(unclosed("a: $${NAME\nb: $$$${X").is_empty(), "`$$` is a literal `$`");
        assert_eq!(unclosed("c: $$${Y"), vec![(1, 4)]);
    }

    #[test]
    fn keys_allowed_at_a_place_are_found_through_refs() {
        let root = super::super::json_schema();
        let route = allowed_keys(&root, "/routes/1");
        assert!(route.iter().any(|k| k == "authenticate") && route.iter().any(|k| k == "upstream"), "{route:?}");
        let timeouts = allowed_keys(&root, "/upstreams/app/timeouts");
        assert!(timeouts.iter().any(|k| k == "connect"), "{timeouts:?}");
    }
}

//! The config file: loading with `${ENV}` interpolation, the serde types,
//! units, and errors that name the file, the path and the line.

pub mod aggregate;
pub mod field_errors;
pub mod locate;
pub mod observe;
pub mod resilience;
pub(crate) mod strict_json;
mod structure;
pub mod warning_names;
pub(crate) use structure::reads_environment;
pub mod types;
pub mod units;

use std::fmt;
use std::path::{Path, PathBuf};

pub use field_errors::FieldErrors;
pub use locate::Locations;
pub use observe::{AccessLogConfig, AccessLogFormat, AdminConfig, LogFormat, LogLevel, OtlpConfig, TracingConfig};
pub use types::*;

/// One problem in a config, located as precisely as we can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, or a name such as `<embedded demo>`.
    pub file: String,
    /// Path inside the document, e.g. `routes[2].upstream`; empty for the root.
    pub path: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one config; a config is only used when this is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A parsed config together with what is needed to explain problems in it.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    /// Shown in errors: the file path or a descriptive name.
    pub source_name: String,
    /// Relative file names in the config (CA bundles…) are resolved from here.
    pub base_dir: PathBuf,
    pub locations: Locations,
    /// xxh3 of the config text: which config is running, in logs.
    pub hash: u64,
    /// The text, for the admin's `/config` (`document`).
    pub text: std::sync::Arc<str>,
}

impl LoadedConfig {
    /// An error at `path`, located through the index.
    pub fn error(&self, path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        let path = path.into();
        let position = self.locations.find(&path);
        let line = position.and_then(|(l, _)| self.text.lines().nth(l.saturating_sub(1))).unwrap_or("");
        let message = structure::without_environment_values(message.into(), line);
        ConfigError { file: self.source_name.clone(), position, path, message }
    }

    /// Every problem of `errors`, located in this config.
    pub fn errors(&self, errors: FieldErrors) -> impl Iterator<Item = ConfigError> + '_ {
        errors.into_iter().map(|(path, message)| self.error(path, message))
    }

    /// The effective config as JSON: as loaded (`${ENV}` replaced), every
    /// default filled in (secrets included: redact before showing it).
    pub fn document(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Object(Default::default()))
    }

    /// A file name from the config, resolved against the config's folder.
    pub fn resolve_file(&self, name: &str) -> PathBuf {
        self.base_dir.join(name)
    }
}

/// The largest config or document file read (a config of 20,000 routes
/// is a few MB): `--config /dev/zero` must not take the memory.
pub const MAX_FILE: u64 = 64 << 20;

/// A file the config names (a certificate, a key, a CA bundle, an
/// htpasswd or JWKS file, a document): a regular file (not a FIFO that
/// never ends, not a device such as `/dev/zero`) of at most `MAX_FILE`
/// bytes. A reload reads them on the thread that handles signals: a FIFO
/// there stalled every later reload and SIGTERM.
pub fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    // Asked before opening: opening a FIFO waits for a writer.
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a pipe, `<(…)`, a device or a folder): write it to a file",
        ));
    }
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(std::io::Error::other(format!("larger than {} MiB", MAX_FILE >> 20)));
    }
    Ok(bytes)
}

/// A config or document file's text (`read_file`, and UTF-8).
pub fn read_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_file(path)?).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = good.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        let utf16 = e.as_bytes().starts_with(&[0xFF, 0xFE]) || e.as_bytes().starts_with(&[0xFE, 0xFF]);
        let hint = if utf16 { " (it is UTF-16: save it as UTF-8)" } else { "" };
        std::io::Error::other(format!("not UTF-8 text at line {line}, column {column}{hint}"))
    })
}

/// Reads and parses a config file.
pub fn load_file(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let name = path.display().to_string();
    let text = read_text(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: name.clone(),
            path: String::new(),
            position: None,
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse_str(&text, &name, &base)
}

/// A JSON or YAML document the config names (an OpenAPI document, a
/// schema file), as a value. YAML is read as 1.2, as OpenAPI asks: `yes`,
/// `no`, `on`, `off`, `y` and `n` are strings (YAML 1.1 made them booleans,
/// so `enum: [yes, no]` or a parameter named `n` would change meaning).
pub fn load_document(path: &Path) -> Result<serde_json::Value, String> {
    let text = read_text(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let parsed: Result<serde_json::Value, String> = if path.extension().is_some_and(|e| e == "json") {
        strict_json::from_str(&text).map_err(|e| {
            // A YAML document saved as `.json`: the name decides the reader.
            let yaml_like = !text.trim_start().starts_with(['{', '[', '"']) && e.line() <= 1 && e.column() <= 1;
            if yaml_like {
                format!("{e} (a `.json` file is read as JSON: name it `.yaml` if it is YAML)")
            } else {
                e.to_string()
            }
        })
    } else {
        // The operator's own files (at most 64 MiB, `read_text`): the
        // reader's default budget (250,000 nodes) refused Stripe's and
        // GitHub's published descriptions (under a million each). Four
        // million bounds what a reload may spend on one (19 million took
        // minutes and 700 MB in a dev build).
        let budget = serde_saphyr::budget! { max_nodes: 4_000_000, max_events: 8_000_000 };
        // Tags refused as in the config (`!include` was dropped unread).
        let options = serde_saphyr::options! { strict_booleans: true, budget: budget, reject_unsupported_tags: true };
        serde_saphyr::from_str_with_options(&text, options).map_err(|e| {
            let text = e.to_string();
            match text.find("budget breached") {
                // The breach is a Rust value's debug text
                // (`RecordedAnchorEvents { recorded_anchor_events: 1000001 }`):
                // said in words, `recorded anchor events`.
                Some(at) => {
                    let kind = text[at..].trim_start_matches("budget breached").trim_start_matches([':', ' ']);
                    let kind = kind.split([' ', '{', '(']).next().unwrap_or_default();
                    let words: String = kind
                        .chars()
                        .flat_map(|c| if c.is_uppercase() { vec![' ', c.to_ascii_lowercase()] } else { vec![c] })
                        .collect();
                    let words = words.trim_end();
                    if words == " depth" {
                        // Not a size: the YAML reader stops at 64 levels, JSON at 128.
                        "nested deeper than the YAML reader's 64 levels: convert it to JSON (read up to 128 levels) \
                         or flatten it (with `$ref`s to named schemas)"
                            .to_string()
                    } else {
                        format!(
                            "too large for the YAML reader (too many{words}: the budget is 4,000,000 nodes; aliases \
                             count each time they are used): convert it to JSON"
                        )
                    }
                }
                None => text,
            }
        })
    };
    parsed.map_err(|e| format!("`{}` is not a JSON or YAML document: {e}", path.display()))
}

/// The environment's variables for `${NAME}`, those whose name and value
/// are UTF-8 (`std::env::vars` panics on any other, and one the config
/// never names, `LANG_NOTE=caf\xe9`, stopped `check` and `run`; one the
/// config names that is no UTF-8 reads as unset, an error naming it).
pub fn environment() -> std::collections::HashMap<String, String> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

/// How config text is read, with `properties` for `${NAME}`: also for
/// the CLI, which reads a running gateway's admin block as it reads it.
pub fn reader_options(properties: std::collections::HashMap<String, String>) -> serde_saphyr::Options {
    // A tag (`!include file`, `!ENV NAME`) was dropped unread: the body
    // became the text `file`, a secret the text `NAME`. Refused instead.
    serde_saphyr::options! { strict_booleans: true, reject_unsupported_tags: true }.with_properties(properties)
}

/// Parses config text. `${NAME}` in plain (unquoted) scalars is replaced by
/// the environment variable `NAME`; an unset variable is an error that names it.
pub fn parse_str(text: &str, source_name: &str, base_dir: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let locations = Locations::index(text);
    // YAML 1.2 booleans, as for documents (`load_document`): `yes`, `no`,
    // `on` and `off` are strings (an inline schema's `enum: [yes, no]` stays
    // two strings; `websocket: yes` is an error, as the JSON Schema says).
    let options = reader_options(environment());
    let mut error_path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, Option<Config>>(de).map_err(|e| {
            error_path = e.path().to_string();
            e.into_inner()
        })
    });
    let unclosed = unclosed_variable_errors(text, source_name, &locations);
    match parsed {
        Ok(_) if !unclosed.is_empty() => Err(ConfigErrors(unclosed)),
        Ok(config) => Ok(LoadedConfig {
            config: config.unwrap_or_default(),
            source_name: source_name.to_string(),
            base_dir: base_dir.to_path_buf(),
            locations,
            hash: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
            text: text.into(),
        }),
        Err(e) => {
            let e = unredacted(text, e);
            let position = e.location().map(|l| (l.line() as usize, l.column() as usize));
            let mut path = if error_path == "." { String::new() } else { error_path };
            // The parser's position can name a deeper node than serde's path
            // (a bad `${VAR}` in a field, a duplicate key): prefer the deeper one.
            if let Some(exact) = position.and_then(|p| locations.path_at(p))
                && (exact.len() > path.len() || path.contains('?'))
            {
                path = exact.to_string();
            }
            let position = position.or_else(|| locations.find(&path));
            // With `${VAR}`s in the file the library hides an unknown key's
            // name (it might have come from the environment); the path
            // names that key already, so the message may too.
            let key = path.rsplit('.').next().filter(|k| !k.is_empty() && !k.contains(['[', '?']));
            let mut message = plain_message(&e, key);
            // `${VAR}` in a flow mapping: its braces end the mapping, and
            // the parser's words do not say so.
            let line = position.and_then(|(l, _)| text.lines().nth(l.saturating_sub(1))).unwrap_or("");
            // The line from the error's column on (the reader counts characters, not bytes).
            let from_column = position
                .and_then(|(_, c)| line.char_indices().nth(c.saturating_sub(1)).map(|(i, _)| &line[i..]))
                .unwrap_or("");
            // A plain value (`log_level: verbose`) the reader hid as a
            // kind's name: it was written here, not read from a variable.
            if let Some(allowed) = message.strip_prefix("expected one key naming the kind, one of ") {
                let at = from_column;
                let token: String = at.chars().take_while(|c| !c.is_whitespace() && !",}]#:".contains(*c)).collect();
                let a_key = at[token.len()..].starts_with(':');
                if !token.is_empty() && !a_key && !token.starts_with(['$', '{', '[', '"', '\'']) {
                    message = format!("unknown value `{token}`, expected one of {allowed}");
                }
            }
            // A whole number is what was written, but it does not fit.
            let written: String = from_column.chars().take_while(char::is_ascii_digit).collect();
            if message.starts_with("expected a whole number") && written.len() > 9 {
                message = format!("`{written}` is too large here");
            }
            // Name the alias that refers to nothing (`*nope`).
            if message.starts_with("`*name` refers to no anchor") {
                let at = from_column;
                let alias: String = at.chars().take_while(|c| !c.is_whitespace() && !",]}".contains(*c)).collect();
                if alias.starts_with('*') && alias.len() > 1 {
                    let name = &alias[1..];
                    message = format!("`{alias}` refers to no anchor: define `&{name}` above its first use");
                }
            }
            // A number as written (`1e6`), not as the reader holds it (`1000000`).
            if let Some(rest) = message.strip_prefix('`')
                && let Some((quoted, tail)) = rest.split_once('`')
                && (tail.starts_with(" is not a size") || tail.starts_with(" is not a duration"))
            {
                let at = from_column;
                let token: String = at.chars().take_while(|c| !c.is_whitespace() && !",}]#".contains(*c)).collect();
                // Only a number the reader rewrote; a text is quoted as it was.
                if quoted.parse::<f64>().is_ok()
                    && !token.is_empty()
                    && token != quoted
                    && !token.starts_with(['"', '\'', '$'])
                {
                    message = format!("`{token}`{tail}");
                }
            }
            // The library says "string" for a list and a mapping alike: say
            // which one was written, and the IPv6 hint only for `[…:…]`.
            if message.starts_with("expected text, not a list") {
                let at = from_column;
                let bracketed = at.strip_prefix('[').and_then(|r| r.split(']').next()).unwrap_or("");
                let ipv6 =
                    bracketed.contains(':') && bracketed.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
                if !ipv6 {
                    message = if at.starts_with('[') || at.starts_with('-') {
                        "expected text, not a list".into()
                    } else {
                        "expected text, not a mapping (`{ … }` or indented `key: value` lines)".into()
                    };
                }
            }
            // The value came from the environment: say from where (not the
            // value itself, which may be a secret set in the wrong place).
            if let Some(name) = Some(from_column)
                .and_then(|rest| rest.strip_prefix("${"))
                .and_then(|rest| rest.split(['}', ':', '-']).next())
                .filter(|name| {
                    !name.is_empty()
                        && !message.contains(&format!("`{name}`"))
                        && !message.contains("is no variable name")
                })
            {
                message.push_str(&format!(" (the value of `${{{name}}}` from the environment)"));
            }
            if message.contains("while parsing a flow") && line.contains("${") {
                message.push_str(
                    ": a `${VAR}` cannot stand unquoted inside `{ … }` or `[ … ]` (its braces end the \
                     mapping, and a quoted one stays literal); write this mapping in block style, one key \
                     per line, where `key: ${VAR}` reads the environment",
                );
            }

            // serde knows a map entry's path only once its key parsed; name the key.
            if let Some(key) = message.strip_prefix("duplicate key `").and_then(|k| k.strip_suffix('`')) {
                path = path.replace('?', key);
            }
            // A parse error inside a mapping, before any key: name the mapping.
            if let Some(parent) = path.strip_suffix(".?") {
                path = parent.to_string();
            }
            let mut errors = vec![ConfigError { file: source_name.to_string(), path, position, message }];
            // The parser stops at the first key given twice: the index knows every one.
            for (dup, at) in locations.duplicates() {
                let key = dup.rsplit('.').next().unwrap_or(dup);
                if !errors
                    .iter()
                    .any(|e| e.position == Some(*at) || e.path == *dup && e.message.starts_with("duplicate"))
                {
                    errors.push(ConfigError {
                        file: source_name.to_string(),
                        path: dup.clone(),
                        position: Some(*at),
                        message: format!("duplicate key `{key}`"),
                    });
                }
            }
            // serde stopped at the first problem: the schema finds the rest.
            let (more, _) = structure::problems(text, source_name, &locations);
            for e in unclosed.into_iter().chain(more) {
                if !errors.iter().any(|known| known.path == e.path) {
                    errors.push(e);
                }
            }
            errors.sort_by_key(|e| e.position.unwrap_or((usize::MAX, 0)));
            Err(ConfigErrors(errors))
        }
    }
}

/// The reader hides an error's words once a `${NAME}` was read in the same
/// list entry or above (they might hold its value): `10k` under a listener
/// with `bind: ${BIND}` was "invalid interpolated scalar value". The text
/// read again with no variables resolved (each stays its `${NAME}` text)
/// fails at the same place in words that hold nothing from the
/// environment; taken when it is the same place.
fn unredacted(text: &str, e: serde_saphyr::Error) -> serde_saphyr::Error {
    if !e.without_snippet().to_string().contains("interpolated") {
        return e;
    }
    let literal = serde_saphyr::options! { strict_booleans: true, reject_unsupported_tags: true };
    let again = serde_saphyr::with_deserializer_from_str_with_options(text, literal, |de| {
        serde_path_to_error::deserialize::<_, Option<Config>>(de).map_err(|e| e.into_inner())
    });
    match again {
        Err(literal) if literal.location() == e.location() && e.location().is_some() => literal,
        _ => e,
    }
}

/// The `${NAME}` mistakes the library passes in silence (`structure::variable_mistakes`).
fn unclosed_variable_errors(text: &str, source_name: &str, locations: &Locations) -> Vec<ConfigError> {
    structure::variable_mistakes(text)
        .into_iter()
        .map(|(line, column, message)| ConfigError {
            file: source_name.to_string(),
            path: locations.path_on(line, column).map(|(p, _)| p.to_string()).unwrap_or_default(),
            position: Some((line, column)),
            message,
        })
        .collect()
}

/// A config that did not parse, with the nodes that hold its structural
/// problems cut out: what is left, for `check` to find the semantic
/// problems too in the same run. `None` when even that does not read.
/// Values the schema takes but the reader refuses (a duration past ten
/// years) are cut too, one at a time, and given back as problems.
pub fn parse_repaired(text: &str, source_name: &str, base_dir: &Path) -> Option<(LoadedConfig, Vec<ConfigError>)> {
    /// Cuts at most this many such values (each a read of the document).
    const MAX_CUTS: usize = 16;
    let locations = Locations::index(text);
    let (_, doc) = structure::problems(text, source_name, &locations);
    let mut doc = doc?;
    let mut cut = Vec::new();
    let config: Config = loop {
        match serde_path_to_error::deserialize::<_, Config>(doc.clone()) {
            Ok(config) => break config,
            Err(e) => {
                let path = e.path().to_string();
                // A type the JSON reading gave a plain scalar (`name: 1` is
                // text to the config's reader), or a field the schema's cuts
                // took: not a value of the file's to cut and say.
                let said = e.inner().to_string();
                let typed = said.starts_with("invalid type") || said.starts_with("missing field");
                if typed
                    || path.is_empty()
                    || path == "."
                    || cut.len() == MAX_CUTS
                    || !structure::remove(&mut doc, &path)
                {
                    return None;
                }
                let position = locations.find(&path);
                let line = position.and_then(|(l, _)| text.lines().nth(l.saturating_sub(1))).unwrap_or("");
                let message = structure::without_environment_values(e.into_inner().to_string(), line);
                cut.push(ConfigError { file: source_name.to_string(), position, path, message });
            }
        }
    };
    let loaded = LoadedConfig {
        config,
        source_name: source_name.to_string(),
        base_dir: base_dir.to_path_buf(),
        locations,
        hash: xxhash_rust::xxh3::xxh3_64(text.as_bytes()),
        text: text.into(),
    };
    Some((loaded, cut))
}

/// The error text without the source snippet and position (we print those
/// ourselves), in our words where the library's would puzzle a user.
fn plain_message(e: &serde_saphyr::Error, key: Option<&str>) -> String {
    let mut text = e.without_snippet().to_string();
    if let Some(key) = key {
        text = text.replace("unknown field `an interpolated field`", &format!("unknown field `{key}`"));
    }
    // The library names no key once a `${NAME}` was read before (a tagged
    // value, such as an auth provider, is a mapping with one key naming
    // its kind).
    text = text.replace(
        "unknown variant `an interpolated variant`, expected one of",
        "expected one key naming the kind, one of",
    );
    if text.starts_with("expected end of mapping after enum variant value") {
        return "two keys naming a kind: a mapping here has exactly one (an auth provider is `jwt: { … }` or \
                `basic: { … }`, not both)"
            .into();
    }
    // Drop a trailing " at line X, column Y" that the library appends.
    let text = match text.rfind(" at line ") {
        Some(i) => &text[..i],
        None => &text,
    };
    if let Some(written) = text.strip_prefix("Invalid name: '").and_then(|t| t.strip_suffix('\'')) {
        return format!(
            "`{written}` is no variable name: a name is letters, digits and `_`, not starting with a digit \
             (write `$$` for a literal `$`)"
        );
    }
    if let Some(tag) = text.strip_prefix("unsupported tag `").and_then(|t| t.split('`').next()) {
        return format!(
            "`{tag}`: YAML tags are not read (nothing is included; for an environment variable write `${{NAME}}`)"
        );
    }
    if text.starts_with("tabs disallowed") {
        return "a tab in the indentation: YAML indents with spaces only".into();
    }
    if text == "alias references unknown anchor" {
        return "`*name` refers to no anchor: an anchor (`&name`) must be defined above its first use".into();
    }
    let text = text.replace("unknown variant `", "unknown value `");
    let text = text.as_str();
    if let Some(var) = text.strip_prefix("missing property ") {
        let name = var.trim_matches('`').split('`').next().unwrap_or_default();
        if std::env::var_os(name).is_some_and(|v| v.to_str().is_none()) {
            return format!(
                "environment variable `{name}` is set, but not to UTF-8 text: the config reads variables as UTF-8"
            );
        }
        // `${NAME:?why}`: the file's own words follow the name.
        return match var.split_once("`: ") {
            Some((name, why)) => format!("environment variable {name}` is not set: {why}"),
            None => format!("environment variable {var} is not set"),
        };
    }
    if let Some(rest) = text.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set DuplicateKeyPolicy").next().unwrap_or(rest);
        return format!("duplicate key `{key}`");
    }
    if let Some(hinted) = did_you_mean(text) {
        return hinted;
    }
    if text.starts_with("multiple YAML documents detected") {
        return "a config is one YAML document: the `---` above starts a second one (remove it, or merge the two)"
            .into();
    }
    if text.starts_with("budget breached: Depth") {
        return "nested too deeply (a config or schema goes at most 64 levels deep)".into();
    }
    if text.starts_with("budget breached: Nodes") {
        return "more than 250,000 YAML nodes (some 20,000 one-line routes): the reader stops here".into();
    }
    if text.starts_with("budget breached") {
        return format!("the file is too large for the YAML reader ({})", text.trim_start_matches("budget breached: "));
    }
    if text.starts_with("cannot deserialize null into") {
        return "a key or value is empty (`null`): write one".into();
    }
    // The library's words for a scalar or a node of the wrong kind, in ours.
    let plain = match text {
        "invalid u8" | "invalid u16" | "invalid u32" | "invalid u64" | "invalid usize" => {
            "expected a whole number, 0 or more (like `10`)"
        }
        "invalid i8" | "invalid i16" | "invalid i32" | "invalid i64" | "invalid isize" => {
            "expected a whole number (like `10`)"
        }
        "invalid f32" | "invalid f64" | "invalid number" => "expected a number (like `0.5`)",
        "invalid bool" | "invalid boolean" => "expected `true` or `false`",
        "invalid boolean (strict mode expects true/false)" => {
            "expected `true` or `false` (the config is YAML 1.2: `yes`, `no`, `on` and `off` are text)"
        }
        "expected sequence start" => "expected a list, like `[a, b]` or one `- item` per line",
        // A list given to a key that takes one of a few words.
        "externally tagged enum expected scalar or mapping" => "expected one value, not a list",
        "expected mapping start" | "expected empty mapping start" => {
            "expected a mapping, like `{ key: value }` or one `key: value` per line"
        }
        // A list where text goes: most often an unquoted `[::]:8080`.
        "expected string scalar" => {
            "expected text, not a list (an IPv6 address in brackets starts a YAML list: quote it, `\"[::]:8080\"`)"
        }
        _ => return text.to_string(),
    };
    plain.to_string()
}

/// `unknown field `upstreem`, expected one of …` with the nearest allowed
/// key named first, when one is a typo away.
fn did_you_mean(text: &str) -> Option<String> {
    let rest = text.strip_prefix("unknown field `")?;
    let (field, allowed) = rest.split_once("`, expected one of ")?;
    let nearest = nearest_key(field, allowed.split(", ").map(|k| k.trim_matches('`')))?;
    if nearest == field {
        return Some(format!("`{field}` cannot be here as well: only one of {allowed}"));
    }
    Some(format!("unknown field `{field}`: did you mean `{nearest}`? (expected one of {allowed})"))
}

/// The allowed key a typo away from `field`, if one is.
pub(crate) fn nearest_key<'a>(field: &str, allowed: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    allowed.map(|k| (edit_distance(field, k), k)).filter(|(d, k)| *d <= (k.len() / 3).max(1)).min().map(|(_, k)| k)
}

/// Levenshtein distance of two short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The JSON Schema of the config file, for editors.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(Config);
    let mut schema = serde_json::to_value(schema).unwrap_or_default();
    integer_ranges(&mut schema);
    allow_variables(&mut schema);
    schema
}

/// The ranges of the integer types behind `format: uint16` and the like
/// (a format on a number is only a note to a validator: `max_connections:
/// 99999999999999999999999` passed the editor and not `check`).
fn integer_ranges(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            let max: Option<u64> = match map.get("format").and_then(serde_json::Value::as_str) {
                Some("uint8") => Some(u8::MAX.into()),
                Some("uint16") => Some(u16::MAX.into()),
                Some("uint32") => Some(u32::MAX.into()),
                Some("uint64" | "uint") => Some(u64::MAX),
                _ => None,
            };
            if let Some(max) = max
                && !map.contains_key("maximum")
            {
                map.insert("maximum".into(), max.into());
            }
            map.values_mut().for_each(integer_ranges);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integer_ranges),
        _ => {}
    }
}

/// Calls `f` with the config path (`routes[2].upstream`) and text of every
/// string in a document.
pub(crate) fn for_each_string(v: &serde_json::Value, f: &mut impl FnMut(&str, &str)) {
    fn walk(v: &serde_json::Value, path: &mut String, f: &mut impl FnMut(&str, &str)) {
        use serde_json::Value;
        match v {
            Value::String(s) => f(path, s),
            Value::Object(map) => {
                for (k, v) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    walk(v, path, f);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    walk(v, path, f);
                    path.truncate(len);
                }
            }
            _ => {}
        }
    }
    walk(v, &mut String::new(), f);
}

/// An unquoted `${NAME}` (or `${NAME:-text}`, `${NAME-text}`), which the
/// config reads from the environment.
pub(crate) const VARIABLE_PATTERN: &str = "^\\$\\{[A-Za-z_][A-Za-z0-9_]*(:?-[^}]*)?\\}$";

/// Where a value must be a number, a boolean or a unit (`30s`, `10/s`),
/// the editor schema also takes `${NAME}`: the editor sees the file as
/// written, before the variable is read (plain text values take it anyway).
fn allow_variables(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            for child in map.values_mut() {
                allow_variables(child);
            }
            let scalar = |t: &str| matches!(t, "integer" | "number" | "boolean");
            let typed = match map.get("type") {
                Some(Value::String(t)) => scalar(t),
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).any(scalar),
                _ => false,
            };
            let patterned = map.get("pattern").is_some_and(Value::is_string);
            if typed || patterned {
                let original = Value::Object(std::mem::take(map));
                *v = serde_json::json!({ "anyOf": [ original, { "type": "string", "pattern": VARIABLE_PATTERN } ] });
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_variables),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    /// JSON documents: a name twice in an object is refused (serde_json kept
    /// the last silently); YAML saved as `.json` is told so.
    #[test]
    fn json_documents_are_read_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let twice = dir.path().join("twice.json");
        std::fs::write(&twice, r#"{"type": "object", "properties": {"a": {"type": "integer"}}, "properties": {}}"#)
            .unwrap();
        let e = load_document(&twice).unwrap_err();
        assert!(e.contains("`properties` is given twice") && e.contains("twice.json"), "{e}");
        let yaml = dir.path().join("spec.json");
        std::fs::write(&yaml, "openapi: 3.0.3\ninfo: { title: t, version: '1' }\n").unwrap();
        let e = load_document(&yaml).unwrap_err();
        assert!(e.contains("name it `.yaml`"), "{e}");
    }

    /// Published API descriptions run to hundreds of thousands of YAML
    /// nodes (Stripe's, GitHub's): a document is not held to the reader's
    /// default budget of 250,000.
    #[test]
    fn large_yaml_documents_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yaml");
        let items: String = (0..300_000).map(|i| format!("- {i}\n")).collect();
        std::fs::write(&path, format!("openapi: 3.0.3\nx-items:\n{}", items.replace("- ", "  - "))).unwrap();
        let doc = super::load_document(&path).expect("loads");
        assert_eq!(doc["x-items"].as_array().map(Vec::len), Some(300_000));
    }

    use super::*;

    fn parse(text: &str) -> Result<LoadedConfig, ConfigErrors> {
        parse_str(text, "test.yaml", Path::new("."))
    }

    #[test]
    fn unknown_field_names_path_and_line() {
        let err = parse("routes:\n  - name: a\n    upstreem: x\n").unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.path, "routes[0].upstreem");
        assert_eq!(e.position.map(|p| p.0), Some(3));
        assert!(e.message.contains("upstreem"), "{}", e.message);
    }

    #[test]
    fn bad_duration_is_located() {
        let err =
            parse("upstreams:\n  u:\n    targets: [\"http://a:1\"]\n    timeouts: { connect: soon }\n").unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.path, "upstreams.u.timeouts.connect");
        assert_eq!(e.position.map(|p| p.0), Some(4));
        assert!(e.message.contains("not a duration"), "{}", e.message);
    }

    #[test]
    fn text_given_a_list_or_a_mapping_says_which() {
        let message = |value: &str| {
            let text = format!("listeners:\n  - name: {value}\n    bind: 127.0.0.1:1\n");
            parse(&text).unwrap_err().0[0].message.clone()
        };
        assert!(message("{ first: x }").starts_with("expected text, not a mapping"), "{}", message("{ first: x }"));
        assert!(message("\n      first: x").starts_with("expected text, not a mapping"));
        assert_eq!(message("[a, b]"), "expected text, not a list");
        assert_eq!(message("\n      - a"), "expected text, not a list");
        assert!(message("[::]:8080").contains("an IPv6 address in brackets"), "{}", message("[::]:8080"));
    }

    #[test]
    fn sizes_are_quoted_as_written_and_nginx_units_answered() {
        let message = |v: &str| {
            let text =
                format!("listeners:\n  - name: a\n    bind: 127.0.0.1:1\n    limits: {{ max_body_size: {v} }}\n");
            parse(&text).unwrap_err().0[0].message.clone()
        };
        assert!(message("1e6").starts_with("`1e6` is not a size"), "{}", message("1e6"));
        assert!(message("18446744073709551616").starts_with("`18446744073709551616` is not"));
        assert!(message("10k").contains("write `10KiB`"), "{}", message("10k"));
    }

    #[test]
    fn yaml_and_variable_mistakes_are_said_in_words() {
        let first = |text: &str| parse(text).unwrap_err().0[0].message.clone();
        let bad_name = first("listeners:\n  - name: ${1BAD}\n    bind: 127.0.0.1:1\n");
        assert!(bad_name.starts_with("`${1BAD}` is no variable name"), "{bad_name}");
        assert!(!bad_name.contains("from the environment"), "{bad_name}");
        assert_eq!(
            first("listeners:\n  - <<: *nope\n    name: x\n"),
            "`*nope` refers to no anchor: define `&nope` above its first use"
        );
        assert_eq!(first("listeners:\n\t- name: x\n"), "a tab in the indentation: YAML indents with spaces only");
        assert!(first("log_level: verbose\n").starts_with("unknown value `verbose`"));
    }

    #[test]
    fn an_unknown_key_is_named_in_a_file_with_variables() {
        // `${HOME}`: a variable every test process has.
        let text = "listeners:\n  - name: p\n    bind: ${HOME}\nbogus_kye: 1\nroutse: []\n";
        let errors = parse_str(text, "test.yaml", Path::new(".")).unwrap_err();
        let first = &errors.0[0];
        assert_eq!(first.path, "bogus_kye");
        assert!(first.message.starts_with("unknown field `bogus_kye`"), "{}", first.message);
        let message = parse_str("admin:\n  bind: ${HOME}\nroutse: []\n", "test.yaml", Path::new(".")).unwrap_err().0[0]
            .message
            .clone();
        assert!(message.contains("`routse`: did you mean `routes`?"), "{message}");
    }

    #[test]
    fn the_editor_schema_takes_variables_with_defaults() {
        let schema = jsonschema::validator_for(&json_schema()).unwrap();
        for value in ["${MAXB}", "${MAXB:-1MiB}", "${MAXB-1MiB}", "1MiB"] {
            let doc = serde_json::json!({ "listeners": [ { "name": "p", "bind": "127.0.0.1:1", "limits": { "max_body_size": value } } ] });
            assert!(schema.is_valid(&doc), "{value}");
        }
        let doc = serde_json::json!({ "listeners": [ { "name": "p", "bind": "127.0.0.1:1", "limits": { "max_body_size": "${MAXB" } } ] });
        assert!(!schema.is_valid(&doc));
    }

    #[test]
    fn the_editor_schema_holds_the_ranges_check_holds() {
        let schema = jsonschema::validator_for(&json_schema()).unwrap();
        let route = |extra: serde_json::Value| {
            let mut r = serde_json::json!({ "name": "r", "match": { "path": "/r" }, "upstream": "u" });
            r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::json!({ "routes": [ r ] })
        };
        for (doc, ok) in [
            (route(serde_json::json!({ "retry": { "attempts": 10 } })), true),
            (route(serde_json::json!({ "retry": { "attempts": 11 } })), false),
            (route(serde_json::json!({ "rate_limit": [ { "key": "ip", "rate": "1/s", "ipv6_prefix": 129 } ] })), false),
            (route(serde_json::json!({ "quota": [ { "key": "ip", "limit": 0, "per": "day" } ] })), false),
            (
                serde_json::json!({ "listeners": [ { "name": "p", "bind": "127.0.0.1:1", "limits": { "h2_max_concurrent_streams": 0 } } ] }),
                false,
            ),
            (
                serde_json::json!({ "upstreams": { "u": { "targets": [ { "url": "http://a:1", "weight": 0 } ] } } }),
                false,
            ),
            (
                serde_json::json!({ "upstreams": { "u": { "targets": [ { "url": "http://a:1", "weight": 1001 } ] } } }),
                false,
            ),
            (serde_json::json!({ "warnings": { "allow": [ "unused-upstream" ] } }), true),
            (serde_json::json!({ "warnings": { "allow": [ "unused-upstreams" ] } }), false),
        ] {
            assert_eq!(schema.is_valid(&doc), ok, "{doc}");
        }
    }

    #[test]
    fn the_config_is_yaml_1_2_inline_schemas_included() {
        let text = "routes:\n  - name: v\n    match: { path: /v }\n    validate:\n      query:\n        \
                    answer: { type: string, enum: [yes, no, on, off] }\n    static: { body: ok }\n";
        let loaded = parse_str(text, "test.yaml", Path::new(".")).unwrap();
        let doc = loaded.document();
        let answer = &doc["routes"][0]["validate"]["query"]["answer"];
        assert_eq!(answer["enum"], serde_json::json!(["yes", "no", "on", "off"]), "{answer}");
    }

    #[test]
    fn env_interpolation() {
        // SAFETY of the test: PATH is always set; we only read it.
        let path = std::env::var("PATH").unwrap();
        let cfg = parse("listeners:\n  - name: ${PATH}\n    bind: 127.0.0.1:0\n").unwrap();
        assert_eq!(cfg.config.listeners[0].name, path);
        let err = parse("listeners:\n  - name: ${PORTCULLIS_SURELY_UNSET_VAR}\n    bind: x\n").unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.path, "listeners[0].name");
        assert_eq!(e.message, "environment variable `PORTCULLIS_SURELY_UNSET_VAR` is not set");
        let err =
            parse("listeners:\n  - name: ${PORTCULLIS_SURELY_UNSET_VAR:?give the listener a name}\n    bind: x\n")
                .unwrap_err();
        assert_eq!(
            err.0[0].message,
            "environment variable `PORTCULLIS_SURELY_UNSET_VAR` is not set: give the listener a name"
        );
    }

    #[test]
    fn yaml_tags_are_refused_not_dropped() {
        // `!include page.html` became the body `page.html`; `!ENV NAME` a secret `NAME`.
        for (text, path) in [
            (
                "routes:\n  - name: r\n    match: { path: / }\n    static: { body: !include page.html }\n",
                "routes[0].static.body",
            ),
            ("listeners:\n  - name: !ENV LISTENER\n    bind: 127.0.0.1:0\n", "listeners[0].name"),
        ] {
            let e = &parse(text).unwrap_err().0[0];
            assert_eq!(e.path, path, "{text}");
            assert!(e.message.contains("YAML tags are not read"), "{}", e.message);
        }
        // The core schema's own tags are read as they say.
        let cfg = parse("listeners:\n  - name: !!str gw\n    bind: 127.0.0.1:0\n").unwrap();
        assert_eq!(cfg.config.listeners[0].name, "gw");
        // And in the documents the config names (schemas, OpenAPI).
        let dir = tempfile::tempdir().unwrap();
        let schema = dir.path().join("s.yaml");
        std::fs::write(&schema, "properties: { role: { const: !include role.txt } }\n").unwrap();
        assert!(load_document(&schema).unwrap_err().contains("!include"));
        std::fs::write(&schema, "properties: { role: { const: !!str admin } }\n").unwrap();
        assert_eq!(load_document(&schema).unwrap()["properties"]["role"]["const"], "admin");
    }

    #[test]
    fn a_typo_names_the_key_it_meant() {
        let err = parse("routes:\n  - name: a\n    upstreem: x\n").unwrap_err();
        assert!(err.0[0].message.contains("did you mean `upstream`?"), "{}", err.0[0].message);
        let err = parse("routes:\n  - name: a\n    zzzzzz: x\n").unwrap_err();
        assert!(!err.0[0].message.contains("did you mean"), "{}", err.0[0].message);
        assert_eq!(edit_distance("upstreem", "upstream"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    /// A mapping naming two kinds, or a kind the library cannot name (a
    /// `${NAME}` read before it): said in our words, not serde's.
    #[test]
    fn a_tagged_mapping_is_explained_in_our_words() {
        let two = "auth:\n  p: { jwt: { algorithms: [HS256], secret: abcabcabcabcabcabcabcabcabcabcabcabc }, basic: { realm: x, users: {} } }\n";
        let said: Vec<String> =
            parse(two).unwrap_err().0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        assert!(said.iter().any(|m| m.contains("two keys naming a kind")), "{said:?}");
        assert!(said.iter().all(|m| !m.contains("did you mean `basic`") && !m.contains("enum variant")), "{said:?}");
        // SAFETY of the test: PATH is always set; it is only read.
        let interpolated = "listeners:\n  - name: a\n    bind: ${PATH}\nauth:\n  p: { type: jwt }\n";
        let said: Vec<String> =
            parse(interpolated).unwrap_err().0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        // Read again without the variable's value: as a file without variables says it.
        assert!(said.iter().any(|m| m.contains("auth.p: unknown value `type`, expected one of jwt")), "{said:?}");
        assert!(said.iter().all(|m| !m.contains("an interpolated variant")), "{said:?}");
        // A plain value after a `${NAME}` is not a kind: named as written.
        let level = "listeners:\n  - name: a\n    bind: ${PATH}\nlog_level: verbose\n";
        let said: Vec<String> =
            parse(level).unwrap_err().0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        assert!(
            said.iter().any(|m| m.starts_with("log_level: unknown value `verbose`, expected one of error")),
            "{said:?}"
        );
    }

    /// A provider's kind is the key it has: a bad value inside
    /// `introspection:` is that problem alone, not a `jwt:` provider
    /// missing its key and an "unknown" `introspection`.
    #[test]
    fn a_variant_is_judged_by_the_key_it_has() {
        let yaml = "auth:\n  p:\n    introspection:\n      endpoint: http://127.0.0.1:9/i\n      \
                    client_id: gw\n      client_secret: s\n      on_error: unauthenticated\n";
        let err = parse(yaml).unwrap_err();
        let said: Vec<_> = err.0.iter().map(|e| format!("{}: {}", e.path, e.message)).collect();
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("auth.p.introspection.on_error: unknown value `unauthenticated`"), "{said:?}");
    }

    #[test]
    fn library_words_become_ours() {
        for (yaml, want) in [
            (
                "upstreams:\n  u: { targets: [\"http://a:1\"], pool: { max_idle_per_target: -1 } }\n",
                "expected a whole number, 0 or more",
            ),
            (
                "upstreams:\n  u: { targets: [\"http://a:1\"], pool: { max_idle_per_target: lots } }\n",
                "expected a whole number, 0 or more",
            ),
            (
                "routes:\n  - { name: r, match: { path: /, methods: GET }, echo: {} }\n",
                "expected a list, like `[a, b]`",
            ),
            ("routes: { name: x }\n", "expected a list"),
            ("listeners:\n  - { name: v6, bind: [::]:8080 }\n", "quote it, `\"[::]:8080\"`"),
            (
                "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\", limits: { max_body_size: -5 } }\n",
                "`-5` is not a size",
            ),
            (
                "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\", limits: { max_body_size: 1.5 } }\n",
                "`1.5` is not a size",
            ),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.0[0].message.contains(want), "{yaml}: {}", err.0[0].message);
            assert!(
                !err.0[0].message.contains("untagged") && !err.0[0].message.contains("invalid u"),
                "{}",
                err.0[0].message
            );
        }
    }

    #[test]
    fn a_variable_in_a_flow_mapping_gets_a_hint() {
        let err = parse("listeners:\n  - { name: gw, bind: ${PATH} }\n").unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.path, "listeners[0]");
        assert!(e.message.contains("block style"), "{}", e.message);
    }

    #[test]
    fn duplicate_keys_are_named() {
        let err =
            parse("upstreams:\n  a: { targets: [\"http://x:1\"] }\n  a: { targets: [\"http://x:2\"] }\n").unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.message, "duplicate key `a`");
        assert_eq!(e.position.map(|p| p.0), Some(3));
        assert!(!e.path.contains('?'), "{}", e.path);
    }

    #[test]
    fn typo_in_weighted_target_is_named() {
        let err = parse("upstreams:\n  a: { targets: [ { url: \"http://x:1\", wieght: 2 } ] }\n").unwrap_err();
        assert!(err.0[0].message.contains("wieght"), "{}", err.0[0].message);
    }

    #[test]
    fn empty_document_is_an_empty_config() {
        let cfg = parse("").unwrap();
        assert!(cfg.config.routes.is_empty());
    }
}

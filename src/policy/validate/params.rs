//! Query parameters, headers and form fields: strings on the wire, read as
//! the type their schema declares (`"10"` is the integer 10 for
//! `type: integer`) before the schema checks them. A value that does not
//! read as the type stays a string, and the schema says what was expected.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Problem, compile_schema};

/// One declared parameter.
pub struct Param {
    pub name: String,
    schema: jsonschema::Validator,
    /// The schema as written (its `type` and `items` decide the reading).
    shape: Value,
    required: bool,
    /// How an array is written in one value (`None`: one value per
    /// occurrence, OpenAPI's `form` with `explode`).
    delimiter: Option<char>,
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
        let required = match members.remove("required") {
            None => place == "path",
            Some(Value::Bool(b)) => b,
            Some(_) => return Err("`required` is true or false here (a parameter's, not an object's list)".into()),
        };
        let style = members.remove("style");
        let explode = members.remove("explode");
        let delimiter = match (place, style.as_ref().and_then(Value::as_str), explode.as_ref().and_then(Value::as_bool))
        {
            ("query", None | Some("form"), None | Some(true)) => None,
            ("query", None | Some("form"), Some(false)) => Some(','),
            ("query", Some("spaceDelimited"), _) => Some(' '),
            ("query", Some("pipeDelimited"), _) => Some('|'),
            ("header" | "path", None | Some("simple"), _) => Some(','),
            ("cookie", None | Some("form"), _) => Some(','),
            (_, Some(other), _) => {
                return Err(format!("style `{other}` is not supported for a {place} parameter here"));
            }
            (_, None, _) => Some(','),
        };
        let schema = compile_schema(&shape, formats)?;
        Ok(Param { name: name.to_string(), schema, shape, required, delimiter })
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
        let split: Vec<&str>;
        let values = match self.delimiter {
            Some(d) if is_type(&self.shape, "array") => {
                split = values.iter().flat_map(|v| v.split(d)).map(str::trim).filter(|v| !v.is_empty()).collect();
                &split[..]
            }
            _ => values,
        };
        let value = read(values, &self.shape);
        for e in self.schema.iter_errors(&value).take(super::MAX_ERRORS) {
            let at = e.instance_path().as_str();
            let pointer = if at.is_empty() { self.name.clone() } else { format!("{}{at}", self.name) };
            problems.push(Problem { place, pointer, detail: e.masked().to_string() });
        }
    }
}

fn is_type(schema: &Value, name: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == name,
        Some(Value::Array(ts)) => ts.iter().any(|t| t == name),
        _ => false,
    }
}

/// The values as the schema's type: an array of all of them, or the first.
fn read(values: &[&str], schema: &Value) -> Value {
    if is_type(schema, "array") {
        let items = schema.get("items").unwrap_or(&Value::Null);
        return Value::Array(values.iter().map(|v| scalar(v, items)).collect());
    }
    scalar(values.first().copied().unwrap_or(""), schema)
}

/// One string as the schema's scalar type, when it reads as one.
fn scalar(raw: &str, schema: &Value) -> Value {
    if is_type(schema, "integer")
        && let Ok(n) = raw.parse::<i64>()
    {
        return n.into();
    }
    if (is_type(schema, "number") || is_type(schema, "integer"))
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
    if is_type(schema, "null") && raw.is_empty() {
        return Value::Null;
    }
    Value::String(raw.to_string())
}

/// `application/x-www-form-urlencoded` pairs, decoded (`+` is a space).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The values of cookie `name` in the request's `Cookie` fields
/// (`a=1; b=2`), percent-decoded.
pub fn cookie_values(headers: &http::HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| decode_path(v.trim_matches('"')))
        .collect()
}

/// A path segment's value, percent-decoded (`+` stays a plus).
pub fn decode_path(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

/// A form body as an object: each field read as its property's type; a
/// field sent more than once is an array.
pub fn form_object(bytes: &[u8], properties: &Map<String, Value>) -> Value {
    let text = String::from_utf8_lossy(bytes);
    let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in query_pairs(&text) {
        fields.entry(k).or_default().push(v);
    }
    let object = fields
        .into_iter()
        .map(|(k, vs)| {
            let schema = properties.get(&k).unwrap_or(&Value::Null);
            let values: Vec<&str> = vs.iter().map(String::as_str).collect();
            let value = if values.len() > 1 && !is_type(schema, "array") {
                Value::Array(values.iter().map(|v| scalar(v, &Value::Null)).collect())
            } else {
                read(&values, schema)
            };
            (k, value)
        })
        .collect();
    Value::Object(object)
}

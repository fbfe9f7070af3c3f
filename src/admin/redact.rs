//! The config as `/config` shows it: every secret replaced.
//!
//! What counts as a secret depends on where a value sits, not only on its
//! key: a `token` string is one (the admin token), a `token` object is where
//! a JWT is read from; a header map is secret where it is sent to a
//! service (`request_headers.set`, `tracing.otlp.headers`: credentials are
//! put there) and public where it goes to every client (`response_headers`,
//! `security_headers`, a static answer's `headers`) or only matches
//! requests (`match.headers`). URLs lose their user part and the values of
//! query parameters that carry credentials (the access log's list).

use serde_json::Value;

use crate::observe::access_log::Redact;

pub const REDACTED: &str = "<redacted>";

/// Keys whose values are secrets wherever they appear (whole subtrees, for
/// maps of users).
const SECRET_KEYS: &[&str] = &["secret", "client_secret", "password", "key", "sha256", "users"];

/// Maps whose keys are names the file chose (an upstream called `users`,
/// a query parameter called `key`), not settings: a name is never taken
/// for a secret key (the whole upstream would be hidden).
/// A schema's `properties` (and the other maps of names in JSON Schema)
/// and `validate.headers` are such maps too: a field called `password`
/// hid its rules (`minLength`).
const NAMED: &[&str] = &[
    "upstreams",
    "auth",
    "formats",
    "calls",
    "operations",
    "security",
    "query",
    "path",
    "cookies",
    "properties",
    "patternproperties",
    "$defs",
    "definitions",
    "dependentschemas",
    "dependentrequired",
    VALIDATED_HEADERS,
];

/// `validate.headers`, told from the other `headers` maps (some of which
/// are sent to services and hold credentials).
const VALIDATED_HEADERS: &str = "validate.headers";

/// Replaces every secret in `doc`.
/// `query`: the running plan's list, which knows the query parameters its
/// `api_key` and `jwt` providers read (the access log's; the default list
/// left a provider's own name, `?customq=`, shown in a probe's path).
pub fn redact(doc: &mut Value, query: &Redact) {
    redact_under(doc, None, query);
}

fn redact_under(doc: &mut Value, parent: Option<&str>, query: &Redact) {
    match doc {
        Value::Object(map) if parent.is_some_and(|p| NAMED.contains(&p)) => {
            map.values_mut().for_each(|v| redact_under(v, None, query));
        }
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.to_ascii_lowercase();
                // A limit's `key` says what it counts by (`ip`, `{ header: X-Tenant }`).
                let counts_by = key == "key" && matches!(parent, Some("rate_limit" | "quota" | "concurrency"));
                let secret = SECRET_KEYS.contains(&key.as_str()) && !counts_by
                    // The admin token, a bearer token: a string (an object
                    // says where a token is read from).
                    || key == "token" && v.is_string();
                // Header values sent to a service: names stay, values go.
                let sent_headers =
                    (key == "set" && parent == Some("request_headers")) || (key == "headers" && parent == Some("otlp"));
                if secret && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else if sent_headers && let Value::Object(headers) = v {
                    headers.values_mut().for_each(|value| *value = Value::String(REDACTED.into()));
                } else if key == "headers" && parent == Some("validate") {
                    redact_under(v, Some(VALIDATED_HEADERS), query);
                } else {
                    redact_under(v, Some(&key), query);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact_under(item, parent, query)),
        Value::String(s) => {
            if let Some(clean) = clean_url(s, query) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// `scheme://user:pass@host/path?token=…`, or a path with a query (a
/// health probe's, an aggregate call's), with the user part and the
/// credential parameters' values replaced (as the access log shows a
/// `Referer`); `None` if nothing changes or the string is neither.
fn clean_url(s: &str, query: &Redact) -> Option<String> {
    let url_like = s.contains("://") || s.starts_with('/') && s.contains('?');
    if !url_like {
        return None;
    }
    let mut out = Vec::with_capacity(s.len());
    query.url(s.as_bytes(), &mut out);
    // Only ASCII was put in, at ASCII boundaries: still UTF-8.
    let clean = String::from_utf8(out).ok()?;
    (clean != s).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_and_the_rest_stays() {
        let mut doc = serde_json::json!({
            "auth": { "hs": { "jwt": { "secret": "s3cr3t", "algorithms": ["HS256"],
                                       "token": { "header": "authorization" },
                                       "jwks_uri": "https://idp.example/jwks?api_key=k3y&v=2" } },
                      "basic": { "basic": { "users": { "alice": "$2y$10$x" } } },
                      "intro": { "introspection": { "endpoint": "https://idp.example/introspect?token=t0k3n",
                                                    "client_secret": "cs" } } },
            "consumers": [ { "id": "acme", "api_keys": [ { "sha256": "ab12" } ] } ],
            "rate_limit_store": { "redis": { "url": "redis://:hunter2@127.0.0.1:6379/0" } },
            "upstreams": { "u": { "health": { "active": { "path": "/health?token=pr0be" } } } },
            "admin": { "token": "t0k" },
            "tracing": { "otlp": { "endpoint": "http://c:4318", "headers": { "x-api-key": "otlpk" } } },
            "security_headers": { "set": { "content-security-policy": "default-src 'self'" } },
            "routes": [ { "name": "r", "upstream": "u",
                          "match": { "headers": [ { "name": "x-version", "value": "2" } ] },
                          "request_headers": { "set": { "Authorization": "Bearer reqs3cret", "X-Api-Token": "hdr" },
                                               "remove": ["cookie"] },
                          "response_headers": { "set": { "x-served-by": "gw" } } } ]
        });
        redact(&mut doc, &Redact::default());
        let text = doc.to_string();
        for secret in
            ["s3cr3t", "$2y$10$x", "ab12", "hunter2", "t0k", "k3y", "t0k3n", "cs", "otlpk", "reqs3cret", "hdr", "pr0be"]
        {
            assert!(
                !text.contains(&format!("\"{secret}")) && !text.contains(&format!("={secret}")),
                "{secret} in {text}"
            );
        }
        assert_eq!(doc["rate_limit_store"]["redis"]["url"], "redis://<redacted>@127.0.0.1:6379/0");
        assert_eq!(doc["auth"]["hs"]["jwt"]["jwks_uri"], "https://idp.example/jwks?api_key=<redacted>&v=2");
        assert_eq!(doc["auth"]["hs"]["jwt"]["token"]["header"], "authorization");
        assert_eq!(doc["upstreams"]["u"]["health"]["active"]["path"], "/health?token=<redacted>");
        assert_eq!(doc["routes"][0]["request_headers"]["set"]["Authorization"], REDACTED);
        assert_eq!(doc["routes"][0]["request_headers"]["remove"][0], "cookie");
        assert_eq!(doc["routes"][0]["match"]["headers"][0]["value"], "2");
        assert_eq!(doc["routes"][0]["response_headers"]["set"]["x-served-by"], "gw");
        assert_eq!(doc["security_headers"]["set"]["content-security-policy"], "default-src 'self'");
        assert_eq!(doc["tracing"]["otlp"]["headers"]["x-api-key"], REDACTED);
        assert_eq!(doc["tracing"]["otlp"]["endpoint"], "http://c:4318");
        assert_eq!(doc["routes"][0]["upstream"], "u");
        assert_eq!(doc["consumers"][0]["id"], "acme");
    }

    /// A query parameter a provider reads (`api_key: { query: customq }`)
    /// is hidden as the access log hides it, with the plan's list.
    #[test]
    fn a_providers_own_query_parameter_is_hidden() {
        let mut doc = serde_json::json!({
            "upstreams": { "u": { "health": { "active": { "path": "/health?customq=HEALTHCUSTOM&v=1" } } } }
        });
        redact(&mut doc, &Redact::new(["customq".to_string()]));
        assert_eq!(doc["upstreams"]["u"]["health"]["active"]["path"], "/health?customq=<redacted>&v=1");
    }

    #[test]
    fn names_the_file_chose_are_not_secret_keys() {
        let mut doc = serde_json::json!({
            "upstreams": { "users": { "targets": ["http://10.0.0.1:80"] }, "key": { "targets": ["http://10.0.0.2:80"] } },
            "auth": { "secret": { "basic": { "users": { "ann": "$2y$10$x" } } } },
            "routes": [ { "validate": {
                "query": { "password": { "type": "string", "minLength": 8 } },
                "headers": { "Key": { "type": "string", "minLength": 4 } },
                "body": { "schema": { "properties": { "secret": { "type": "boolean" } },
                    "$defs": { "key": { "pattern": "^[a-z]+$" } } } }
            } } ]
        });
        redact(&mut doc, &Redact::default());
        let validate = &doc["routes"][0]["validate"];
        assert_eq!(validate["headers"]["Key"]["minLength"], 4);
        assert_eq!(validate["body"]["schema"]["properties"]["secret"]["type"], "boolean");
        assert_eq!(validate["body"]["schema"]["$defs"]["key"]["pattern"], "^[a-z]+$");
        assert_eq!(doc["upstreams"]["users"]["targets"][0], "http://10.0.0.1:80");
        assert_eq!(doc["upstreams"]["key"]["targets"][0], "http://10.0.0.2:80");
        assert_eq!(doc["auth"]["secret"]["basic"]["users"], REDACTED, "a provider's users stay hidden");
        assert_eq!(doc["routes"][0]["validate"]["query"]["password"]["minLength"], 8);
    }

    #[test]
    fn what_a_limit_counts_by_is_shown() {
        let mut doc = serde_json::json!({
            "routes": [ { "rate_limit": [ { "key": "ip", "rate": "5/s" } ], "quota": [ { "key": { "header": "X-Tenant" } } ],
                          "concurrency": [ { "key": ["consumer", "route"] } ] } ],
            "listeners": [ { "tls": { "certificates": [ { "cert": "c.pem", "key": "k.pem" } ] } } ]
        });
        redact(&mut doc, &Redact::default());
        assert_eq!(doc["routes"][0]["rate_limit"][0]["key"], "ip");
        assert_eq!(doc["routes"][0]["quota"][0]["key"]["header"], "X-Tenant");
        assert_eq!(doc["routes"][0]["concurrency"][0]["key"][1], "route");
        assert_eq!(doc["listeners"][0]["tls"]["certificates"][0]["key"], REDACTED, "any other `key` stays hidden");
    }
}

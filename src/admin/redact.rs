//! The config as `/config` shows it: every secret replaced.

use serde_json::Value;

pub const REDACTED: &str = "<redacted>";

/// Keys whose values are secrets wherever they appear.
const SECRET_KEYS: &[&str] = &["secret", "client_secret", "token", "password", "key", "sha256", "headers", "users"];

/// Replaces every secret in `doc`: values under secret keys (whole
/// subtrees, for maps of users or headers) and the user part of URLs
/// (`redis://:pass@host`).
pub fn redact(doc: &mut Value) {
    match doc {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        Value::String(s) => {
            if let Some(clean) = without_userinfo(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// `scheme://user:pass@host…` with the user part replaced.
fn without_userinfo(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    Some(format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_and_the_rest_stays() {
        let mut doc = serde_json::json!({
            "auth": { "hs": { "jwt": { "secret": "s3cr3t", "algorithms": ["HS256"] } },
                      "basic": { "basic": { "users": { "alice": "$2y$10$x" } } } },
            "consumers": [ { "id": "acme", "api_keys": [ { "sha256": "ab12" } ] } ],
            "rate_limit_store": { "redis": { "url": "redis://:hunter2@127.0.0.1:6379/0" } },
            "admin": { "token": "t0k" },
            "routes": [ { "name": "r", "upstream": "u" } ]
        });
        redact(&mut doc);
        let text = doc.to_string();
        for secret in ["s3cr3t", "$2y$10$x", "ab12", "hunter2", "t0k"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(doc["rate_limit_store"]["redis"]["url"], "redis://<redacted>@127.0.0.1:6379/0");
        assert_eq!(doc["routes"][0]["upstream"], "u");
        assert_eq!(doc["consumers"][0]["id"], "acme");
    }
}

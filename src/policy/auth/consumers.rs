//! Consumers: known callers, found by API key hash, Basic user name or
//! client certificate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::units::parse_date;

use super::config::ConsumerConfig;
use crate::config::FieldErrors;
use crate::policy::compile::CompileCtx;
use crate::policy::ctx::{Consumer, group_fault, scope_fault};
use crate::tls::TrustedCa;

#[derive(Debug, Default)]
pub struct Consumers {
    /// SHA-256 of a key → consumer and the key's expiry.
    pub(super) by_key_hash: HashMap<[u8; 32], (Arc<Consumer>, Option<SystemTime>)>,
    pub(super) by_basic_user: HashMap<String, Arc<Consumer>>,
    pub(super) by_subject: HashMap<String, Certified>,
    pub(super) by_san: HashMap<String, Certified>,
}

/// A consumer a certificate names, and the CAs that may issue it (`ca`).
#[derive(Debug, Clone)]
pub(super) struct Certified {
    pub consumer: Arc<Consumer>,
    pub ca: Option<Arc<TrustedCa>>,
}

impl Certified {
    /// Whether `cert` may name this consumer: any certificate the listener
    /// verified, or with `ca`, one of those CAs issued.
    pub fn admits(&self, cert: &crate::tls::ClientIdentity) -> bool {
        self.ca.as_ref().is_none_or(|ca| cert.issued_by(ca))
    }
}

impl Consumers {
    /// Errors are `(path under consumers, message)`.
    pub fn compile(list: &[ConsumerConfig], cx: &mut CompileCtx<'_>) -> Result<Consumers, FieldErrors> {
        let mut out = Consumers::default();
        // Each CA file read once, however many certificates name it.
        let mut cas: HashMap<std::path::PathBuf, Arc<TrustedCa>> = HashMap::new();
        let mut errors = FieldErrors::new();
        let mut ids: Vec<&str> = Vec::new();
        for (i, c) in list.iter().enumerate() {
            if c.id.is_empty() || ids.contains(&c.id.as_str()) {
                errors.push((format!("[{i}].id"), format!("consumer ids must be unique and non-empty (`{}`)", c.id)));
            }
            ids.push(&c.id);
            for (j, g) in c.groups.iter().enumerate() {
                if let Some(why) = group_fault(g) {
                    errors.push((format!("[{i}].groups[{j}]"), why));
                }
            }
            for (j, s) in c.scopes.iter().enumerate() {
                if let Some(why) = scope_fault(s) {
                    errors.push((format!("[{i}].scopes[{j}]"), why));
                }
            }
            let consumer =
                Arc::new(Consumer { id: c.id.as_str().into(), groups: c.groups.clone(), scopes: c.scopes.clone() });
            for (j, k) in c.api_keys.iter().enumerate() {
                let Some(hash) = parse_sha256(&k.sha256) else {
                    errors.push((
                        format!("[{i}].api_keys[{j}].sha256"),
                        "not 64 hex digits (use `portcullis hash-key`)".into(),
                    ));
                    continue;
                };
                let expires = match &k.expires {
                    None => None,
                    Some(d) => match parse_date(d) {
                        Some(t) => Some(t),
                        None => {
                            errors.push((
                                format!("[{i}].api_keys[{j}].expires"),
                                format!("`{d}` is not a date like `2027-01-31`"),
                            ));
                            None
                        }
                    },
                };
                if out.by_key_hash.insert(hash, (consumer.clone(), expires)).is_some() {
                    errors.push((format!("[{i}].api_keys[{j}].sha256"), "this key belongs to two consumers".into()));
                }
            }
            for (j, u) in c.basic_users.iter().enumerate() {
                if out.by_basic_user.insert(u.clone(), consumer.clone()).is_some() {
                    errors.push((format!("[{i}].basic_users[{j}]"), format!("user `{u}` belongs to two consumers")));
                }
            }
            for (j, m) in c.certificates.iter().enumerate() {
                let ca = match &m.ca {
                    None => None,
                    Some(file) => {
                        let path = cx.loaded.resolve_file(file);
                        match cas.get(&path) {
                            Some(ca) => Some(ca.clone()),
                            None => match TrustedCa::load(&path) {
                                Ok(ca) => Some(cas.entry(path).or_insert(Arc::new(ca)).clone()),
                                Err(e) => {
                                    errors.push((format!("[{i}].certificates[{j}].ca"), e));
                                    continue;
                                }
                            },
                        }
                    }
                };
                let certified = Certified { consumer: consumer.clone(), ca };
                match (&m.subject, &m.san) {
                    (Some(s), None) => {
                        if let Some(why) = unmatchable_subject(s) {
                            errors.push((format!("[{i}].certificates[{j}].subject"), why));
                        } else if spaced_equals(s) {
                            errors.push((
                                format!("[{i}].certificates[{j}].subject"),
                                format!(
                                    "`{s}` has spaces around `=`, as OpenSSL prints by default: no certificate's \
                                     subject reads so here. Write `KEY=value`, e.g. `C=US, O=Example, CN=svc-a` \
                                     (`openssl x509 -noout -subject -nameopt oneline,-space_eq` prints it)"
                                ),
                            ));
                        }
                        if out.by_subject.insert(normalize_dn(s), certified).is_some() {
                            errors.push((
                                format!("[{i}].certificates[{j}]"),
                                "this subject belongs to two consumers".into(),
                            ));
                        }
                    }
                    (None, Some(s)) => {
                        if out.by_san.insert(san_key(s), certified).is_some() {
                            errors
                                .push((format!("[{i}].certificates[{j}]"), "this SAN belongs to two consumers".into()));
                        }
                    }
                    _ => errors
                        .push((format!("[{i}].certificates[{j}]"), "give exactly one of `subject` or `san`".into())),
                }
            }
        }
        if errors.is_empty() { Ok(out) } else { Err(errors) }
    }
}

/// DNs compare without spaces after commas and case-insensitively.
/// A SAN as consumers are looked up by: its type and its value, the type
/// given (`DNS:`, `URI:`, `email:`, as a certificate's are) or read from the
/// value's shape (`://`: a URI, `@`: an email address, else a DNS name).
/// DNS names and email addresses ignore case; URIs (SPIFFE ids) do not.
pub(super) fn san_key(san: &str) -> String {
    let typed =
        |prefix: &str| san.get(..prefix.len()).filter(|p| p.eq_ignore_ascii_case(prefix)).map(|_| &san[prefix.len()..]);
    let (kind, value) = if let Some(v) = typed("DNS:") {
        ("dns", v)
    } else if let Some(v) = typed("URI:") {
        ("uri", v)
    } else if let Some(v) = typed("email:") {
        ("email", v)
    } else if san.contains("://") {
        ("uri", san)
    } else if san.contains('@') {
        ("email", san)
    } else {
        ("dns", san)
    };
    let value = if kind == "uri" { value.to_string() } else { value.to_ascii_lowercase() };
    format!("{kind}:{value}")
}

/// Why a subject written so matches no certificate, for the forms
/// copied from OpenSSL's other outputs: `/O=…/CN=…` (its old form), a
/// leading `subject=`, a value in quotes (the gateway escapes with `\`).
fn unmatchable_subject(dn: &str) -> Option<String> {
    let form = "write `KEY=value` pairs separated by commas, e.g. `C=US, O=Example, CN=svc-a` \
                (`openssl x509 -noout -subject -nameopt oneline,-space_eq` prints it, after `subject=`)";
    if dn.trim_start().starts_with('/') {
        Some(format!("`{dn}` is OpenSSL's old `/O=…/CN=…` form, which no subject reads as here: {form}"))
    } else if dn.trim_start().to_ascii_lowercase().starts_with("subject") {
        Some(format!("`{dn}` starts with OpenSSL's label: {form}"))
    } else if unescaped_quote(dn) {
        Some(format!(
            "`{dn}` quotes a value: write a `,` `+` `\"` `\\` `<` `>` or `;` in a value with `\\` before it \
             (`O=Example\\, Inc`), no quotes; {form}"
        ))
    } else {
        None
    }
}

/// Whether `dn` holds a `"` that no `\` escapes (RFC 4514's `\"` is a quote in a value).
fn unescaped_quote(dn: &str) -> bool {
    let mut escaped = false;
    for c in dn.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return true,
            _ => {}
        }
    }
    false
}

/// Whether an attribute of `dn` is written `KEY = value` (OpenSSL's
/// default `-subject` output), which the gateway's reading never has.
fn spaced_equals(dn: &str) -> bool {
    // Attributes end at a comma no `\` escapes.
    let mut attributes = Vec::new();
    let (mut start, mut escaped) = (0, false);
    for (i, c) in dn.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                attributes.push(&dn[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    attributes.push(&dn[start..]);
    attributes.into_iter().filter_map(|p| p.trim_start().split_once('=')).any(|(key, value)| {
        !key.is_empty()
            && key.trim_end().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
            && (key.ends_with(char::is_whitespace) || value.starts_with(char::is_whitespace))
    })
}

pub(super) fn normalize_dn(dn: &str) -> String {
    // Split at unescaped `,` and `+` only: an escaped one is part of a
    // value (`CN=a\+Email=b` is one attribute, not two to alias).
    let dn = dn.to_ascii_lowercase();
    let (mut out, mut piece, mut escaped) = (String::new(), String::new(), false);
    for c in dn.chars() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, ',' | '+') => {
                out.push_str(&canonical_attribute(piece.trim()));
                out.push(c);
                piece.clear();
                continue;
            }
            _ => {}
        }
        piece.push(c);
    }
    out.push_str(&canonical_attribute(piece.trim()));
    out
}

/// One `type=value`, its type in OpenSSL's short name (lower case): the
/// long names some tools print (`Email=`, `streetAddress=`, `givenName=`)
/// name the same attribute.
fn canonical_attribute(attribute: &str) -> String {
    let Some((kind, value)) = attribute.split_once('=') else { return attribute.to_string() };
    let kind = match kind.trim() {
        "email" | "e" => "emailaddress",
        "streetaddress" => "street",
        "givenname" => "gn",
        "surname" => "sn",
        "userid" => "uid",
        "domaincomponent" => "dc",
        "uniqueidentifier" => "x500uniqueidentifier",
        "msjurisdictioncountry" => "jurisdictionc",
        "msjurisdictionstateorprovince" => "jurisdictionst",
        "msjurisdictionlocality" => "jurisdictionl",
        other => other,
    };
    format!("{kind}={value}")
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Hex SHA-256 of an API key, as stored in the config.
pub fn hash_key(key: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::normalize_dn;

    #[test]
    fn subjects_compare_by_openssl_names_and_escapes_stay_in_their_value() {
        // The long names some tools print name the same attributes.
        assert_eq!(normalize_dn("CN=a, Email=b@c.d"), normalize_dn("cn=a,emailAddress=b@c.d"));
        assert_eq!(normalize_dn("CN=a + GN=Ann"), normalize_dn("CN=a+givenName=Ann"));
        assert_eq!(normalize_dn("jurisdictionC=DE"), normalize_dn("msJurisdictionCountry=DE"));
        // An escaped separator is part of a value: nothing in it is aliased or split.
        assert_ne!(normalize_dn(r"CN=svc3\+emailAddress=x@y.z"), normalize_dn(r"CN=svc3\+Email=x@y.z"));
        assert_ne!(normalize_dn(r"O=Example\, Email=x"), normalize_dn(r"O=Example\, emailAddress=x"));
        assert_eq!(normalize_dn(r"O=Example\, Inc"), normalize_dn(r"o=example\, inc"));
    }
}

//! The `email` format, common case first. `jsonschema` checks `email` by
//! parsing the address with the `email_address` crate and then its domain
//! as a hostname: about 4,000 instructions per address, an eighth of a
//! validated 1 KiB body's cost (BENCHMARKS.md, issue 12). Most addresses
//! are plain (`jane.doe+tag@example.com`): those are recognised here in one
//! walk, and everything else goes to `jsonschema`'s own check, so the
//! answers are `jsonschema`'s: [`plain`] only accepts a subset of what it
//! accepts (the tests below check that against the crate).

use serde_json::{Value, json};

/// A dot-atom local part of letters, digits and `._%+-`, `@`, and a domain
/// of two or more labels of letters, digits and single inner hyphens whose last
/// label is two or more letters, within the RFC 5321 lengths (64, 253).
/// One pass over the bytes (splitting and windowed scans cost ~850
/// instructions for `jane.doe@example.com`).
pub(super) fn plain(address: &str) -> bool {
    let b = address.as_bytes();
    // The local part; `prev` starts as a dot so that a leading dot fails.
    let mut at = 0;
    let mut prev = b'.';
    while let Some(&c) = b.get(at) {
        if c == b'@' {
            break;
        }
        let ok =
            if c == b'.' { prev != b'.' } else { c.is_ascii_alphanumeric() || matches!(c, b'_' | b'%' | b'+' | b'-') };
        if !ok {
            return false;
        }
        prev = c;
        at += 1;
    }
    if at == 0 || at > 64 || at == b.len() || prev == b'.' {
        return false;
    }
    let domain = &b[at + 1..];
    if domain.len() > 253 {
        return false;
    }
    // Labels: `len` of the current one, whether it is all letters so far.
    let (mut dots, mut len, mut letters, mut prev) = (0, 0, true, b'.');
    for &c in domain {
        if c == b'.' {
            if len == 0 || prev == b'-' {
                return false;
            }
            (dots, len, letters) = (dots + 1, 0, true);
        } else if c.is_ascii_alphanumeric() || c == b'-' {
            // No leading hyphen and no `--` (as in `xn--`, reserved by
            // IDNA at 3 and 4, which jsonschema's hostname check refuses).
            if c == b'-' && (len == 0 || prev == b'-') {
                return false;
            }
            len += 1;
            letters &= c.is_ascii_alphabetic();
            if len > 63 {
                return false;
            }
        } else {
            return false;
        }
        prev = c;
    }
    dots >= 1 && len >= 2 && letters
}

/// The `email` check to register with a schema compiled for `draft`:
/// [`plain`] first, `jsonschema`'s own check for the rest.
pub(super) fn format(draft: jsonschema::Draft) -> Result<impl Fn(&str) -> bool + Send + Sync + 'static, String> {
    let full = jsonschema::options()
        .with_draft(draft)
        .should_validate_formats(true)
        .build(&json!({ "format": "email" }))
        .map_err(|e| e.to_string())?;
    Ok(move |address: &str| plain(address) || full.is_valid(&Value::String(address.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The first version of [`plain`] (split and windowed scans), kept to
    /// hold the one-pass version to the same answers.
    fn reference(address: &str) -> bool {
        let Some((local, domain)) = address.split_once('@') else { return false };
        let local = local.as_bytes();
        let local_ok = (1..=64).contains(&local.len())
            && local.first() != Some(&b'.')
            && local.last() != Some(&b'.')
            && !local.windows(2).any(|w| w == b"..")
            && local.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-'));
        if !local_ok || !(1..=253).contains(&domain.len()) {
            return false;
        }
        let mut labels = 0;
        let mut last = "";
        for label in domain.split('.') {
            let b = label.as_bytes();
            let ok = (1..=63).contains(&b.len())
                && b.first() != Some(&b'-')
                && b.last() != Some(&b'-')
                // `--` (as in `xn--`, at 3 and 4 reserved by IDNA) is left to jsonschema.
                && !b.windows(2).any(|w| w == b"--")
                && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-');
            if !ok {
                return false;
            }
            labels += 1;
            last = label;
        }
        labels >= 2 && last.len() >= 2 && last.bytes().all(|c| c.is_ascii_alphabetic())
    }

    fn jsonschema_accepts(address: &str) -> bool {
        let full = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&json!({ "format": "email" }))
            .unwrap();
        full.is_valid(&json!(address))
    }

    #[test]
    fn plain_addresses_are_ones_jsonschema_accepts() {
        for ok in ["jane.doe@example.com", "a@b.cd", "x_y%z+tag-1@sub-1.example.co.uk", "A.B@EXAMPLE.ORG"] {
            assert!(plain(ok), "{ok}");
            assert!(jsonschema_accepts(ok), "{ok}");
        }
        // Not plain: left to jsonschema, whatever it says.
        for other in [
            "",
            "@",
            "a@",
            "@b.cd",
            "a@b",
            "a@localhost",
            ".a@b.cd",
            "a.@b.cd",
            "a..b@b.cd",
            "a@-b.cd",
            "a@b-.cd",
            "a@b..cd",
            "a@b.c",
            "a@b.c1",
            "a@xn--bcher-kva.de",
            "a@b--c.de",
            "a b@c.de",
            "\"a\"@b.cd",
            "a@[127.0.0.1]",
            "é@b.cd",
            "a@bé.cd",
            "a@b@c.de",
            "Jane <jane@example.com>",
        ] {
            assert!(!plain(other), "{other}");
        }
        let long_local = format!("{}@b.cd", "a".repeat(65));
        assert!(!plain(&long_local));
        let long_label = format!("a@{}.cd", "b".repeat(64));
        assert!(!plain(&long_label));
    }

    #[test]
    fn the_registered_check_answers_as_jsonschema_does() {
        let check = format(jsonschema::Draft::Draft202012).unwrap();
        for address in
            ["jane@example.com", "a@localhost", "\"a b\"@example.com", "a@[127.0.0.1]", "nope", "a@@b.cd", "a@b.c"]
        {
            assert_eq!(check(address), jsonschema_accepts(address), "{address}");
        }
        // What docs/validation.md says `email` takes beyond plain addresses.
        for address in ["\"a b\"@example.com", "a@[127.0.0.1]"] {
            assert!(check(address), "{address}");
        }
    }

    proptest! {
        /// Whatever `plain` accepts, jsonschema accepts (the other way
        /// round is not needed: the rest goes to jsonschema).
        #[test]
        fn plain_accepts_a_subset(address in "[a-zA-Z0-9._%+-]{0,12}@([a-zA-Z0-9-]{0,8}\\.){0,3}[a-zA-Z0-9.-]{0,12}(\\.[a-zA-Z]{1,4})?") {
            if plain(&address) {
                prop_assert!(jsonschema_accepts(&address), "{}", address);
            }
            prop_assert_eq!(plain(&address), reference(&address), "{}", address);
        }

        /// The same, over addresses built the way `plain` reads them (most pass it).
        #[test]
        fn plain_shaped_addresses_are_accepted(
            local in "[a-zA-Z0-9_%+-]{1,10}(\\.[a-zA-Z0-9_%+-]{1,10}){0,2}",
            labels in prop::collection::vec("[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", 1..4),
            tld in "[a-zA-Z]{2,6}",
        ) {
            let address = format!("{local}@{}.{tld}", labels.join("."));
            if plain(&address) {
                prop_assert!(jsonschema_accepts(&address), "{}", address);
            }
            prop_assert_eq!(plain(&address), reference(&address), "{}", address);
        }

        /// The one-pass walk answers as the first version did, on anything.
        #[test]
        fn plain_answers_as_its_reference(address in "[a-zA-Z0-9._%+@é -]{0,24}") {
            prop_assert_eq!(plain(&address), reference(&address), "{}", address);
        }
    }
}

//! IP allow and deny lists: addresses and CIDRs, IPv4-mapped IPv6, deny
//! over allow, and the paths of bad entries.

use http::{HeaderValue, StatusCode};

use super::{Compiled, IpConfig};
use crate::config::FieldErrors;
use crate::policy::compile::{Shared, with_test_ctx};
use crate::policy::ctx::{Outcome, RequestCtx};

fn compile(allow: &[&str], deny: &[&str]) -> Result<Compiled, FieldErrors> {
    let cfg = IpConfig {
        allow: allow.iter().map(|s| s.to_string()).collect(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
    };
    with_test_ctx(Shared::default(), |cx| Compiled::compile(&cfg, cx))
}

fn status(policy: &Compiled, client: &str) -> StatusCode {
    let request_id = HeaderValue::from_static("r-1");
    let ctx = RequestCtx::new(client.parse().unwrap(), &request_id, "route", None);
    match policy.on_request(&ctx) {
        Outcome::Continue => StatusCode::OK,
        Outcome::Respond(resp) => resp.status(),
    }
}

#[test]
fn an_allow_list_admits_only_its_networks() {
    let p = compile(&["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"], &[]).unwrap();
    assert_eq!(status(&p, "10.1.2.3"), StatusCode::OK);
    assert_eq!(status(&p, "2001:db8::1"), StatusCode::OK);
    assert_eq!(status(&p, "192.0.2.7"), StatusCode::OK);
    assert_eq!(status(&p, "192.0.2.8"), StatusCode::FORBIDDEN);
    assert_eq!(status(&p, "11.0.0.1"), StatusCode::FORBIDDEN);
}

#[test]
fn deny_wins_over_allow_and_an_empty_allow_admits_the_rest() {
    let p = compile(&["10.0.0.0/8"], &["10.6.6.0/24"]).unwrap();
    assert_eq!(status(&p, "10.6.6.6"), StatusCode::FORBIDDEN);
    assert_eq!(status(&p, "10.6.7.1"), StatusCode::OK);
    let deny_only = compile(&[], &["203.0.113.0/24"]).unwrap();
    assert_eq!(status(&deny_only, "203.0.113.9"), StatusCode::FORBIDDEN);
    assert_eq!(status(&deny_only, "198.51.100.1"), StatusCode::OK);
}

#[test]
fn ipv4_mapped_ipv6_counts_as_ipv4() {
    // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
    let p = compile(&[], &["198.51.100.0/24"]).unwrap();
    assert_eq!(status(&p, "::ffff:198.51.100.20"), StatusCode::FORBIDDEN);
    let allow = compile(&["198.51.100.0/24"], &[]).unwrap();
    assert_eq!(status(&allow, "::ffff:198.51.100.20"), StatusCode::OK);
}

#[test]
fn bad_entries_are_named_by_their_place() {
    let errs = compile(&["10.0.0.0/8", "10.0.0.0/33"], &["not-an-ip"]).unwrap_err();
    let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["allow[1]", "deny[0]"]);
}

/// Entries written as IPv4-mapped IPv6 (as dual-stack sockets log
/// addresses) match the IPv4 clients they name; they matched nobody.
#[test]
fn ipv4_mapped_entries_match_their_ipv4_clients() {
    let p = compile(&[], &["::ffff:127.0.0.1", "::ffff:10.0.0.0/104"]).unwrap();
    assert_eq!(status(&p, "127.0.0.1"), StatusCode::FORBIDDEN);
    assert_eq!(status(&p, "::ffff:127.0.0.1"), StatusCode::FORBIDDEN);
    assert_eq!(status(&p, "10.9.8.7"), StatusCode::FORBIDDEN);
    assert_eq!(status(&p, "11.0.0.1"), StatusCode::OK);
    let everyone_v4 = compile(&[], &["::ffff:0:0/96"]).unwrap();
    assert_eq!(status(&everyone_v4, "192.0.2.1"), StatusCode::FORBIDDEN);
    assert_eq!(status(&everyone_v4, "2001:db8::1"), StatusCode::OK);
}

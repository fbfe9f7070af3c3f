//! Who the client is. Behind a load balancer the TCP peer is the balancer,
//! and the client's address is in `X-Forwarded-For` or `Forwarded`; but
//! anyone can write those headers, so they are believed only when the peer
//! is a trusted proxy, and then only up to the first untrusted hop.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

pub use crate::wire::names::{X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO};

use crate::config::ClientIpHeader;

/// The `trusted_proxies` list, and the one header they name clients in
/// (`client_ip_header`): reading the other too would let a client write
/// its own address into the header its proxy does not write.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ClientIpHeader,
}

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>, header: ClientIpHeader) -> Self {
        TrustedProxies { nets, header }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

/// An address or CIDR from the config (`trusted_proxies`, `ip.allow`,
/// `ip.deny`), in the form client addresses are compared in: an
/// IPv4-mapped network (`::ffff:10.0.0.0/104`, as dual-stack sockets log
/// addresses) is the IPv4 network it maps (`10.0.0.0/8`), or it would
/// never match a client.
pub fn parse_net(text: &str) -> Option<IpNet> {
    let net = text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from)).ok()?;
    let mapped = match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6.addr().to_ipv4_mapped().map(|v4| (v4, v6.prefix_len() - 96)),
        _ => None,
    };
    Some(match mapped {
        Some((v4, prefix)) => IpNet::V4(ipnet::Ipv4Net::new(v4, prefix).ok()?.trunc()),
        None => net.trunc(),
    })
}

/// IPv4-mapped IPv6 (`::ffff:10.0.0.1`) compares as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The resolved client of one request.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The client's address, after walking trusted hops.
    pub ip: IpAddr,
    /// Whether the TCP peer is a trusted proxy (its forwarding headers count).
    pub peer_trusted: bool,
    /// The client was read from `Forwarded` (`client_ip_header: forwarded`):
    /// the request's `X-Forwarded-For` is nobody's word, and is not passed on.
    pub from_forwarded: bool,
}

/// Resolves the client address: walk the forwarding chain from the right,
/// skipping trusted proxies; the first untrusted address is the client.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> Client {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return Client { ip: peer, peer_trusted: false, from_forwarded: false };
    }
    let chain = match trusted.header {
        ClientIpHeader::XForwardedFor => x_forwarded_for(headers),
        ClientIpHeader::Forwarded => forwarded_for(headers),
    };
    let mut client = peer;
    for hop in chain.iter().rev() {
        match hop {
            Some(ip) => {
                client = canonical(*ip);
                if !trusted.contains(client) {
                    break;
                }
            }
            // Garbage in the chain: trust nothing to its left.
            None => break,
        }
    }
    Client { ip: client, peer_trusted: true, from_forwarded: trusted.header == ClientIpHeader::Forwarded }
}

fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|s| parse_node(s.trim()))
        .collect()
}

/// `for=` parameters of RFC 7239 `Forwarded`, one per element: an element
/// without one (a proxy that writes only `proto=` and `host=`, as HAProxy
/// can) is a hop of unknown address, where the walk from the right stops.
/// Skipped, the client's own element before it was believed.
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let lines = headers.get_all(http::header::FORWARDED);
    lines
        .iter()
        .flat_map(|v| split_outside_quotes(v.to_str().unwrap_or("for=?"), b','))
        .map(|element| param(element, "for").and_then(|v| parse_node(&v)))
        .collect()
}

/// A parameter of the last `Forwarded` element: the one the trusted proxy
/// in front of the gateway wrote about the request it received (`proto`,
/// `host`), unquoted.
pub fn last_forwarded(headers: &HeaderMap, name: &str) -> Option<String> {
    let last = headers.get_all(http::header::FORWARDED).iter().next_back()?.to_str().ok()?;
    param(split_outside_quotes(last, b',').last()?, name)
}

/// A `name=value` pair of one `Forwarded` element, its value unquoted.
fn param(element: &str, name: &str) -> Option<String> {
    split_outside_quotes(element, b';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| unquote(v.trim()))
    })
}

/// RFC 7230 §3.2.6's quoted-string, or a token as it is.
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else { return v.to_string() };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
    }
    out
}

/// `text` split at `sep` where it is not inside a quoted string:
/// `for="1.1.1.1, for=2.2.2.2"` is one element (an invalid one), not two.
fn split_outside_quotes(text: &str, sep: u8) -> impl Iterator<Item = &str> {
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    let mut cuts = Vec::new();
    for (i, b) in text.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            _ if b == sep && !quoted => {
                cuts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    cuts.push(&text[start..]);
    cuts.into_iter()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(host, _port)| host.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::new(list.iter().map(|s| parse_net(s).unwrap()).collect(), ClientIpHeader::XForwardedFor)
    }

    #[test]
    fn an_ipv4_mapped_trusted_proxy_is_its_ipv4_address() {
        let t = trusted(&["::ffff:10.0.0.1", "::ffff:192.168.0.0/112"]);
        assert!(t.contains("10.0.0.1".parse().unwrap()));
        assert!(t.contains("192.168.4.5".parse().unwrap()));
        assert!(!t.contains("10.0.0.2".parse().unwrap()));
        assert_eq!(parse_net("2001:db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert!(parse_net("10.0.0.0/33").is_none());
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_is_the_client() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1")]);
        let c = resolve("9.9.9.9".parse().unwrap(), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(c.ip, "9.9.9.9".parse::<IpAddr>().unwrap());
        assert!(!c.peer_trusted);
    }

    #[test]
    fn walks_trusted_hops_from_the_right() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.1.1.1, 10.0.0.2")]);
        let c = resolve("10.0.0.1".parse().unwrap(), &h, &trusted(&["10.0.0.0/8"]));
        // 6.6.6.6 was written by the client itself: only 1.1.1.1 is vouched for.
        assert_eq!(c.ip, "1.1.1.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_header_and_garbage() {
        let h = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https"), ("x-forwarded-for", "7.7.7.7")]);
        let forwarded = TrustedProxies::new(vec![parse_net("10.0.0.0/8").unwrap()], ClientIpHeader::Forwarded);
        let c = resolve("10.0.0.1".parse().unwrap(), &h, &forwarded);
        assert_eq!(c.ip, "2001:db8::1".parse::<IpAddr>().unwrap(), "only the configured header is read");
        // By default only `X-Forwarded-For`: a client's `Forwarded` passed through means nothing.
        let h = headers(&[("forwarded", "for=6.6.6.6")]);
        let c = resolve("10.0.0.1".parse().unwrap(), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(c.ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        let h = headers(&[("x-forwarded-for", "1.1.1.1, nonsense")]);
        let c = resolve("10.0.0.1".parse().unwrap(), &h, &trusted(&["10.0.0.0/8"]));
        assert_eq!(c.ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        // A comma inside quotes does not start an element: one invalid value, the walk stops there.
        let h = headers(&[("forwarded", "for=\"1.1.1.1, for=2.2.2.2\"")]);
        assert_eq!(resolve("10.0.0.1".parse().unwrap(), &h, &forwarded).ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        // The trusted proxy's element has no `for=` (it wrote `proto` and
        // `host` only): an unknown hop, not a step to the client's own.
        for said in [&["for=203.0.113.9", "proto=https;host=api.example"][..], &["for=203.0.113.9, by=10.0.0.1"]] {
            let h = headers(&said.iter().map(|v| ("forwarded", *v)).collect::<Vec<_>>());
            assert_eq!(
                resolve("10.0.0.1".parse().unwrap(), &h, &forwarded).ip,
                "10.0.0.1".parse::<IpAddr>().unwrap(),
                "{said:?}"
            );
        }
    }

    #[test]
    fn the_last_forwarded_element_says_the_proxy_s_proto_and_host() {
        let h = headers(&[
            ("forwarded", "for=1.1.1.1;proto=http"),
            ("forwarded", "for=2.2.2.2;host=\"api.example.com:8443\";Proto=https, for=\"[::1]\";proto=\"ht\\tps\""),
        ]);
        assert_eq!(last_forwarded(&h, "proto").as_deref(), Some("https"), "unquoted, escapes undone");
        assert_eq!(last_forwarded(&h, "host"), None, "the last element names no host");
        let h = headers(&[("forwarded", "for=2.2.2.2;host=\"a.example, b\";proto=https")]);
        assert_eq!(last_forwarded(&h, "host").as_deref(), Some("a.example, b"));
        assert_eq!(last_forwarded(&HeaderMap::new(), "proto"), None);
    }
}

//! Header names read off the wire. The names nearly every message carries
//! are recognised by their length and one or two fixed-size compares
//! (their canonical `Content-Length` and lowercase spellings); anything else
//! goes through `HeaderName::from_bytes`, whose general lowercase-and-lookup
//! is the most frequent cost of parsing a head (~150 instructions a name).

use http::header::{self, HeaderName, InvalidHeaderName};

// The gateway's own header names, made once (a `&str` key is parsed on
// every map operation). They live here, at the bottom, because the codec
// must recognise them too: `Connection` never removes them.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers that claim the client's address, scheme, port, host, prefix,
/// original URL or identity in the ways frameworks and other proxies
/// write them (Rack takes the scheme from `X-Forwarded-Ssl`, Spring and
/// Werkzeug honour `X-Forwarded-Port` and `-Prefix`, Symfony
/// `X-Original-URL`, many apps `X-Real-IP` or PHP's `HTTP_CLIENT_IP`,
/// Cloudflare-aware middleware `CF-Connecting-IP`; services moved from
/// behind Kong read `X-Consumer-Username` and `X-Authenticated-Userid`,
/// from behind oauth2-proxy or Authelia `X-Forwarded-User` and
/// `Remote-User`): the gateway sets `X-Forwarded-For/Proto/Host` and its
/// own identity headers itself, and these are only passed on from a
/// trusted proxy, which may have set them. So are the client certificate
/// claims that TLS-terminating proxies send (RFC 9440's `Client-Cert`,
/// Envoy's `X-Forwarded-Client-Cert`, NGINX-style `X-SSL-Client-*`,
/// Traefik's, AWS's, Azure's): a service behind the gateway that reads one
/// would take a client's word for its identity.
pub const CLIENT_CLAIMS: &[&str] = &[
    "client-cert",
    "client-cert-chain",
    "ssl-client-cert",
    "ssl-client-verify",
    "true-client-ip",
    "client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "fastly-client-ip",
    "forwarded-for",
    "front-end-https",
    "remote-user",
    "remote-groups",
    "remote-email",
    "remote-name",
    "x-forwarded-client-cert",
    "x-forwarded-tls-client-cert",
    "x-forwarded-tls-client-cert-info",
    "x-ssl-client-cert",
    "x-ssl-client-dn",
    "x-ssl-client-s-dn",
    "x-ssl-client-i-dn",
    "x-ssl-client-verify",
    "x-client-cert",
    "x-client-verify",
    "x-client-dn",
    "x-arr-clientcert",
    "x-amzn-mtls-clientcert",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-proxyuser-ip",
    "x-forwarded",
    "x-forwarded-ssl",
    "x-forwarded-scheme",
    "x-url-scheme",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-uri",
    "x-original-url",
    "x-original-uri",
    "x-rewrite-url",
    "x-envoy-original-path",
    "x-host",
    "x-original-host",
    "x-http-host-override",
    "x-consumer-username",
    "x-consumer-custom-id",
    "x-credential-identifier",
    "x-anonymous-consumer",
    "x-authenticated-userid",
    "x-authenticated-scope",
    "x-authenticated-groups",
    "x-forwarded-user",
    "x-forwarded-groups",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    "x-remote-user",
    "x-webauth-user",
    "x-credential-username",
    "x-userinfo",
    "x-original-forwarded-for",
    "x-forwarded-path",
    "x-forwarded-protocol",
    "fly-client-ip",
    "x-azure-clientip",
    "x-azure-socketip",
    "x-vercel-forwarded-for",
    "cloudfront-viewer-address",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "cf-access-authenticated-user-email",
    "cf-access-jwt-assertion",
    "gap-auth",
    "x-authenticated-user",
    "istio-peer-identity",
];

/// The lengths of the names of [`CLIENT_CLAIMS`] that start (`true`) or do
/// not start with `x-`, as bits (each is under 64): most names a client
/// sends (`accept`, `cookie`, `authorization`) have a length no claim of
/// their kind has, one bit test instead of sixty compares.
const fn claim_lengths(x: bool) -> u64 {
    let mut mask = 0u64;
    let mut i = 0;
    while i < CLIENT_CLAIMS.len() {
        let b = CLIENT_CLAIMS[i].as_bytes();
        if (b[0] == b'x' && b[1] == b'-') == x {
            mask |= 1 << b.len();
        }
        i += 1;
    }
    mask
}
const X_CLAIM_LENGTHS: u64 = claim_lengths(true);
const OTHER_CLAIM_LENGTHS: u64 = claim_lengths(false);

/// Whether `name` is one of [`CLIENT_CLAIMS`], or by its shape a claim
/// about a client certificate or a login (every proxy names its own:
/// HAProxy's `X-SSL-Client-*`, AWS's `X-Amzn-Mtls-Clientcert-*`, Google's
/// `X-Client-Cert-*`, Cloudflare's `Cf-Client-Cert-*`, oauth2-proxy's
/// `X-Auth-Request-*`; a fixed list always misses one).
pub fn is_client_claim(name: &HeaderName) -> bool {
    let s = name.as_str();
    let lengths = if s.starts_with("x-") { X_CLAIM_LENGTHS } else { OTHER_CLAIM_LENGTHS };
    (s.len() < 64 && lengths & (1 << s.len()) != 0 && CLIENT_CLAIMS.contains(&s)) || shaped_claim(s)
}

/// `x-ssl-*`, `ssl-client*`, `x-amzn-mtls-*`, `x-mtls-*`, `x-spiffe*`,
/// `x-peer-cert*`, `cf-client-cert*`, an `x-` name holding `client-cert`,
/// `clientcert` or `tls-client`, `x-client-` with a certificate's part
/// (`dn`, `cn`, `verify`, `subject`, `issuer`…),
/// `x-auth-request-*` (oauth2-proxy's user, email, groups and token), and
/// the identity and address claims of the proxies a service may sit
/// behind elsewhere: `x-envoy-*` (Envoy removes them from outside
/// clients: a mesh behind the gateway trusts `x-envoy-internal`),
/// `x-goog-authenticated-user-*` and `x-goog-iap-*` (Google IAP),
/// `x-amzn-oidc-*` (AWS ALB), `x-ms-client-principal*` (Azure App
/// Service, and its `x-ms-token-*` tokens), `x-pomerium-*`,
/// `x-appengine-*`, `x-authentik-*`, `x-vouch-*` (Vouch Proxy's user and
/// claims), and without `x-`: `cf-access-*` (Cloudflare Access),
/// `tailscale-user-*` (Tailscale Serve), `oidc-claim-*` (Apache's
/// mod_auth_openidc, with `-` for its `_`), `teleport-jwt-assertion`
/// (Teleport's application access). Names that start otherwise
/// (`content-type`, `cookie`) are passed over at their first bytes.
fn shaped_claim(s: &str) -> bool {
    // Only parts that name a certificate's: `X-Client-Fingerprint` or
    // `X-Client-Serial` are as often a device's.
    const X_CLIENT_PARTS: &[&str] =
        &["dn", "s-dn", "i-dn", "verify", "cn", "subject", "subject-dn", "issuer", "issuer-dn", "principal"];
    const X_PREFIXES: &[&str] = &[
        "ssl-",
        "amzn-mtls-",
        "auth-request-",
        "envoy-",
        "goog-authenticated-user-",
        "goog-iap-",
        "amzn-oidc-",
        "ms-client-principal",
        "pomerium-",
        "appengine-",
        "ms-token-",
        "authentik-",
        "vouch-",
        "mtls-",
        "spiffe",
        "peer-cert",
    ];
    if let Some(rest) = s.strip_prefix("x-") {
        X_PREFIXES.iter().any(|p| rest.starts_with(p))
            || rest.contains("client-cert")
            || rest.contains("clientcert")
            || rest.contains("tls-client")
            || rest.strip_prefix("client-").is_some_and(|part| X_CLIENT_PARTS.contains(&part))
    } else {
        s.starts_with("ssl-client")
            || s.starts_with("cf-client-cert")
            || s.starts_with("cf-access-")
            || s.starts_with("tailscale-user-")
            || s.starts_with("oidc-claim-")
            || s == "teleport-jwt-assertion"
    }
}

/// Headers that make a framework take another method than the request's
/// (Symfony and Laravel read `X-HTTP-Method-Override`, others
/// `X-HTTP-Method` or `X-Method-Override`; Express and ASP.NET with their
/// override middleware): the gateway routes and applies policies by the
/// request's method, so a `POST` that a service runs as `DELETE` would
/// pass the policies of the `POST` route. Refused (400) when they name
/// another method, whoever sends them.
pub const METHOD_OVERRIDES: &[&str] = &["x-http-method-override", "x-http-method", "x-method-override"];

fn is_method_override(s: &str) -> bool {
    matches!(s.len(), 13 | 17 | 22) && METHOD_OVERRIDES.contains(&s)
}

/// The response headers that are the gateway's own word (its tries, the
/// pool's health, an aggregate's completeness): an upstream's lines of
/// these names are dropped as its response is read, so that a client never
/// gets two answers, or the service's word for the gateway's.
pub const GATEWAY_OWN: [HeaderName; 3] = [
    HeaderName::from_static("portcullis-tries"),
    HeaderName::from_static("portcullis-aggregate"),
    HeaderName::from_static("portcullis-upstream-health"),
];

/// Whether `name` is one of [`GATEWAY_OWN`] (by length first: it runs on
/// every line of every response).
pub fn is_gateway_own(name: &HeaderName) -> bool {
    matches!(name.as_str().len(), 16 | 20 | 26) && GATEWAY_OWN.contains(name)
}

/// `Proxy`: no client sends it but to have CGI-style backends read it as
/// `HTTP_PROXY` (httpoxy, CVE-2016-5385); never passed on.
pub const PROXY: HeaderName = HeaderName::from_static("proxy");

/// Removes from a client's request, before the request's phases run (so
/// that the route's own `request_headers.set` of these names stands), the
/// claims of [`CLIENT_CLAIMS`] unless the client is a `trusted` proxy, and
/// `Proxy` from anyone; `Err` names a [`METHOD_OVERRIDES`] header that
/// asks for another method than `method`. Most requests carry none of
/// these: one look at each name, and more only for what is there.
pub fn strip_client_claims(
    headers: &mut http::HeaderMap,
    trusted: bool,
    method: &http::Method,
) -> Result<(), &'static str> {
    let claimed = |name: &HeaderName| *name == PROXY || (!trusted && is_client_claim(name));
    if !headers.keys().any(|n| claimed(n) || is_method_override(n.as_str())) {
        return Ok(());
    }
    for name in METHOD_OVERRIDES {
        // An empty value asks for nothing (frameworks ignore it).
        let other = |v: &http::HeaderValue| {
            let v = v.as_bytes().trim_ascii();
            !v.is_empty() && !v.eq_ignore_ascii_case(method.as_str().as_bytes())
        };
        if headers.get_all(*name).iter().any(other) {
            return Err(name);
        }
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| claimed(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
    Ok(())
}

/// `bytes` is exactly `canonical` or `lower` (fixed-size compares, inlined).
fn spelt<const N: usize>(bytes: &[u8], canonical: &[u8; N], lower: &[u8; N]) -> bool {
    <&[u8; N]>::try_from(bytes).is_ok_and(|b| b == canonical || b == lower)
}

macro_rules! known {
    ($bytes:expr; $($canonical:literal $lower:literal => $name:expr),+ $(,)?) => {
        {
            $(if spelt($bytes, $canonical, $lower) {
                return Ok($name);
            })+
        }
    };
}

/// The header name spelt by `bytes`, as `HeaderName::from_bytes` would make it.
pub fn from_wire(bytes: &[u8]) -> Result<HeaderName, InvalidHeaderName> {
    match bytes.len() {
        4 => known!(bytes; b"Host" b"host" => header::HOST, b"Date" b"date" => header::DATE),
        6 => known!(bytes;
            b"Accept" b"accept" => header::ACCEPT,
            b"Server" b"server" => header::SERVER,
            b"Cookie" b"cookie" => header::COOKIE,
        ),
        10 => known!(bytes;
            b"User-Agent" b"user-agent" => header::USER_AGENT,
            b"Connection" b"connection" => header::CONNECTION,
            b"Keep-Alive" b"keep-alive" => HeaderName::from_static("keep-alive"),
            b"Set-Cookie" b"set-cookie" => header::SET_COOKIE,
        ),
        12 => known!(bytes; b"Content-Type" b"content-type" => header::CONTENT_TYPE),
        13 => known!(bytes;
            b"Authorization" b"authorization" => header::AUTHORIZATION,
            b"Cache-Control" b"cache-control" => header::CACHE_CONTROL,
            b"Last-Modified" b"last-modified" => header::LAST_MODIFIED,
        ),
        14 => known!(bytes; b"Content-Length" b"content-length" => header::CONTENT_LENGTH),
        15 => known!(bytes;
            b"Accept-Encoding" b"accept-encoding" => header::ACCEPT_ENCODING,
            b"Accept-Language" b"accept-language" => header::ACCEPT_LANGUAGE,
        ),
        17 => known!(bytes; b"Transfer-Encoding" b"transfer-encoding" => header::TRANSFER_ENCODING),
        _ => {}
    }
    HeaderName::from_bytes(bytes)
}

/// The lengths of a few header names, as a bit mask: a quick "certainly
/// not one of them" for the names a writer passes by (most of them), before
/// any comparison. Names of 63 bytes or more share the last bit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LengthMask(u64);

impl LengthMask {
    pub fn of<'a>(names: impl IntoIterator<Item = &'a HeaderName>) -> LengthMask {
        let mut mask = LengthMask::default();
        for name in names {
            mask.0 |= bit(name);
        }
        mask
    }

    /// `false`: `name` is none of the names the mask was made of.
    #[inline]
    pub fn may_contain(self, name: &HeaderName) -> bool {
        self.0 & bit(name) != 0
    }
}

fn bit(name: &HeaderName) -> u64 {
    1 << name.as_str().len().min(63)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_claim_and_nothing_else_is_a_claim() {
        for claim in CLIENT_CLAIMS {
            assert!(claim.len() < 64 && is_client_claim(&HeaderName::from_static(claim)), "{claim}");
        }
        for other in [
            "host",
            "x-forwarded-for",
            "x-request-id",
            "client-certs",
            "x-real-ipx",
            "content-length",
            "x-client-id",
            "x-client-version",
            "x-certificate-id",
            "cookie",
            "x-client-fingerprint",
            "x-client-serial",
            "accept",
            "origin",
            "x-hosts",
            "forwarded",
            "x-forwarded-host",
            "x-forwarded-proto",
            "remote-addr",
            "x-auth-token",
            "x-goog-api-key",
            "x-amzn-trace-id",
        ] {
            assert!(!is_client_claim(&HeaderName::from_static(other)), "{other}");
        }
        for shaped in [
            "x-ssl-cert",
            "x-ssl-client-escaped-cert",
            "ssl-client-s-dn",
            "x-amzn-mtls-clientcert-subject",
            "x-client-cert-present",
            "x-client-s-dn",
            "x-client-certificate",
            "cf-client-cert-sha256",
            "x-forwarded-tls-client-cert-info",
            "x-auth-request-user",
            "x-auth-request-access-token",
            "x-envoy-internal",
            "x-goog-authenticated-user-email",
            "x-amzn-oidc-identity",
            "x-ms-client-principal-name",
            "x-pomerium-claim-email",
            "x-ms-token-aad-access-token",
            "x-authentik-username",
            "x-authentik-groups",
            "x-vouch-user",
            "x-vouch-idp-claims-groups",
            "cf-access-client-id",
            "tailscale-user-login",
            "tailscale-user-name",
            "teleport-jwt-assertion",
            "oidc-claim-sub",
            "x-client-subject-dn",
            "x-client-issuer-dn",
            "x-tls-client-dn",
            "x-client-cn",
            "x-mtls-subject",
            "x-spiffe-id",
            "x-client-principal",
            "x-peer-certificate",
        ] {
            assert!(is_client_claim(&HeaderName::from_static(shaped)), "{shaped}");
        }
    }

    #[test]
    fn agrees_with_from_bytes() {
        for name in [
            "Host",
            "Date",
            "Accept",
            "Server",
            "Cookie",
            "User-Agent",
            "Connection",
            "Keep-Alive",
            "Set-Cookie",
            "Content-Type",
            "Authorization",
            "Cache-Control",
            "Last-Modified",
            "Content-Length",
            "Accept-Encoding",
            "Accept-Language",
            "Transfer-Encoding",
            "CONTENT-LENGTH",
            "X-Custom",
            "hOsT",
            "x-request-id",
            "te",
        ] {
            let lower = name.to_ascii_lowercase();
            let expected = HeaderName::from_bytes(name.as_bytes()).unwrap();
            assert_eq!(from_wire(name.as_bytes()).unwrap(), expected, "{name}");
            assert_eq!(from_wire(lower.as_bytes()).unwrap(), expected, "{lower}");
        }
        assert!(from_wire(b"bad name").is_err());
        assert!(from_wire(b"").is_err());
    }

    #[test]
    fn a_length_mask_never_misses_a_member() {
        let long = HeaderName::from_bytes(&[b'x'; 80]).unwrap();
        let mask = LengthMask::of([&header::DATE, &header::CONTENT_LENGTH, &long]);
        for member in [&header::DATE, &header::HOST, &header::CONTENT_LENGTH, &long] {
            assert!(mask.may_contain(member), "{member}");
        }
        assert!(!mask.may_contain(&header::ACCEPT));
        assert!(!LengthMask::default().may_contain(&header::DATE));
    }
}

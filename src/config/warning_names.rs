//! The names of `check`'s warnings: the vocabulary of `warnings.allow`.

/// Every warning's name and what it is about (for `warnings.allow`, the
/// editor schema and the docs); `plan::warnings` finds them.
pub const ALL: &[(&str, &str)] = &[
    ("quoted-variable", "a `${VAR}` inside quotes stays as written"),
    ("unused-upstream", "an upstream no route, aggregate call or API uses"),
    ("unused-auth-provider", "an auth provider no route or API uses"),
    ("credentials-over-http", "credentials accepted on a plain-HTTP, non-loopback listener"),
    ("auth-over-http", "JWKS keys, discovery or token introspection fetched over plain HTTP from another host"),
    ("public-admin", "the admin API bound to a non-loopback address"),
    ("trusted-proxies-everyone", "`trusted_proxies` believes every address"),
    ("weak-password-hash", "a bcrypt hash with a cost under 10"),
    ("literal-secret", "an HMAC or client secret written in the file"),
    ("cors-any-origin-with-auth", "CORS allowing any origin on a route that authenticates"),
    ("unlimited-expensive-auth", "Basic or introspection auth on a route without a rate limit"),
    ("weakened-normalization", "path normalization weaker than the defaults"),
    ("certificate-expiring", "a listener certificate that expires within 30 days, or is not valid yet"),
    ("unknown-format", "a schema `format` the validator does not know: its values pass unchecked"),
    ("unknown-keyword", "a schema key spelled like a keyword but not one (`additionalproperties`): it checks nothing"),
    ("strict-api-shadowed", "a broader route takes the requests a strict API's document does not declare"),
    (
        "methods-fall-through",
        "a guarded route lists its `methods`, and the others on its paths go to a broader route that is not guarded",
    ),
    (
        "rewrite-reaches-guarded",
        "a route's rewrite or aggregate call sends its upstream paths a guarded route to it stands in front of",
    ),
    ("unreachable-route-path", "a route path no request path can be after normalization"),
    ("plus-in-route-path", "a route path with `+`: a request that writes it `%2B` is another path to the routes"),
    ("impossible-schema", "a schema whose lower bound is above its upper one: it refuses every value"),
    ("timeout-beyond-budget", "a time limit longer than the one that holds it: it never applies"),
    ("unenforced-openapi", "an API document declares what the gateway does not check or follow"),
    (
        "certificate-chain-order",
        "a listener certificate file whose next certificate is not the issuer of the one before it",
    ),
    ("certificate-name-mismatch", "a `server_names` entry the listener certificate does not carry"),
    (
        "certificate-never-chosen",
        "a listener certificate SNI never picks for a name: it has no DNS name, or an earlier one names it",
    ),
    ("cidr-host-bits", "an address list entry with bits set past its prefix (`10.0.0.1/8`): the whole network"),
    (
        "mtls-listener-bypass",
        "a route for a host a listener requiring client certificates serves, open on the other listeners too",
    ),
    (
        "mtls-any-listener-ca",
        "a consumer certificate without `ca` where the mtls providers take certificates of several CAs: any can issue its name",
    ),
    (
        "shown-software-headers",
        "a `security_headers.remove` that leaves out defaults (`server`, `x-powered-by`): they reach clients again",
    ),
    ("hsts-preload-ineligible", "HSTS `preload` without `include_subdomains` or with a max-age under a year"),
    (
        "ineffective-limit-setting",
        "a rate-limit setting that changes nothing (a delay beyond the burst, a consumer key with no authentication)",
    ),
    (
        "ineffective-setting",
        "a setting nothing reads where it is written (`jwks_ca` without `jwks_uri`, upstream `tls` with `http://` targets)",
    ),
    (
        "refuses-everything",
        "a route whose own rules refuse every request (a required body on GET, a group nobody is in)",
    ),
];

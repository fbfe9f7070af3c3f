//! `portcullis check`, `schema` and `version`, run as a user runs them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const UNSET: &str = "PORTCULLIS_TEST_SURELY_UNSET";

fn portcullis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_remove(UNSET)
        .env_remove(format!("{UNSET}_TOO"))
        .env("PORTCULLIS_TEST_EMPTY", "")
        .env("PORTCULLIS_TEST_WORD", "abc")
        .env("PORTCULLIS_TEST_SECRET", "hunter2-secret")
        .env("PORTCULLIS_TEST_DURATION", "31415926d")
        .output()
        .expect("run the portcullis binary")
}

fn check(file: &Path) -> (Option<i32>, String, String) {
    let out = portcullis(&["check", "--config", &file.display().to_string()]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// The `.yaml` files of a folder under the crate root, sorted.
fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_passes_check() {
    let files = yaml_files("examples");
    assert!(files.len() >= 2, "expected examples, found {files:?}");
    for file in files {
        let (code, stdout, stderr) = check(&file);
        assert_eq!(code, Some(0), "{}:\n{stderr}", file.display());
        // Without warnings too: an example shows what a config should be
        // (a choice it makes on purpose is in its `warnings.allow`).
        assert!(stdout.trim_end().ends_with(": ok"), "{}: stdout {stdout:?}\n{stderr}", file.display());
    }
}

/// (file in tests/configs/broken, number of errors, expected substrings of
/// stderr). A substring starting with `:` is appended to the file name, so
/// `":9:"` checks that an error is reported at line 9 of that file.
#[rustfmt::skip]
const BROKEN: &[(&str, usize, &[&str])] = &[
    ("unknown-field.yaml", 1, &[":9:", "routes[0].upstreem", "unknown field `upstreem`", "did you mean `upstream`?", "expected one of"]),
    // Messages in the user's words, never the parser's or Rust's.
    ("negative-size.yaml", 1, &[":6:", "listeners[1].limits.max_body_size", "`-5` is not a size", "`1MiB`"]),
    ("methods-not-a-list.yaml", 1, &[":6:", "routes[0].match.methods", "expected a list"]),
    ("duration-no-unit.yaml", 1, &[":4:", "shutdown_timeout", "`10` is not a duration (a unit is needed)", "`30s`"]),
    ("durations-without-units.yaml", 2, &[
        ":4:", "listeners[0].limits.tls_handshake_timeout", "a unit is needed",
        ":5:", "shutdown_timeout", "`10` is not a duration (a unit is needed)",
    ]),
    ("duration-long-unit.yaml", 1, &[":7:", "upstreams.app.timeouts.connect", "`10sec` is not a duration", "(ns, us, ms, s, m, h, d)"]),
    ("negative-count.yaml", 1, &[":7:", "upstreams.app.pool.max_idle_per_target", "expected a whole number, 0 or more"]),
    // The second problem is found by the schema pass: a size still worded as a size.
    ("bad-duration-and-size.yaml", 2, &[":5:", "`5 sec` is not a duration", ":7:", "routes[0].max_body_size", "`10 megs` is not a size", "`1MiB`"]),
    // A value from the environment: the message names the variable (never its value).
    ("env-not-a-number.yaml", 1, &[":8:", "routes[0].static.status", "expected a whole number", "the value of `${PORTCULLIS_TEST_WORD}` from the environment"]),
    ("truncated-pem.yaml", 1, &[":5:", "listeners[0].tls.certificates[0].cert", "no `-----END CERTIFICATE-----` line"]),
    ("env-in-flow-mapping.yaml", 1, &[":3:", "listeners[0]", "cannot stand unquoted inside `{ … }`", "block style"]),
    ("unknown-warning-allowed.yaml", 1, &[":5:", "warnings.allow[0]", "unknown warning `unused-upstreams`", "unused-upstream,"]),
    ("bad-rate.yaml", 1, &[":8:", "routes[0].rate_limit[0].rate", "`10 per second` is not a rate", "`10/s`"]),
    ("yaml11-bool.yaml", 1, &[":10:", "routes[0].websocket", "expected `true` or `false`", "YAML 1.2"]),
    ("bad-bool.yaml", 1, &[":8:", "routes[0].websocket", "expected `true` or `false`"]),
    ("routes-not-a-list.yaml", 1, &[":5:", "routes", "expected a list"]),
    ("upstreams-not-a-mapping.yaml", 1, &[":5:", "upstreams", "expected a mapping"]),
    ("unknown-upstream.yaml", 1, &[":13:", "routes[1].upstream", "unknown upstream `billing`", "orders, users"]),
    ("duplicate-route-name.yaml", 1, &[":8:", "routes[1].name", "duplicate route name `api`", "routes[0]"]),
    ("duplicate-keys-everywhere.yaml", 3, &[
        ":7:", "upstreams.a", "duplicate key `a`",
        ":13:", "routes[0].upstream", "duplicate key `upstream`",
        ":16:", "routes[1].upstream", "unknown upstream `nowhere`",
    ]),
    ("empty-file.yaml", 1, &["listeners", "the file is empty (or comments only)"]),
    ("two-documents.yaml", 1, &[":5:", "a config is one YAML document", "`---`"]),
    ("duplicate-upstream-key.yaml", 1, &[":6:", "upstreams.app:", "duplicate key `app`"]),
    ("ambiguous-routes.yaml", 1, &[":9:", "routes[1].match", "`by-name` is ambiguous", "`by-id`"]),
    ("duplicate-method.yaml", 1, &[":9:", "routes[1].match.methods[1]", "`GET` is listed twice"]),
    ("upstream-tls.yaml", 2, &[
        ":9:", "upstreams.grpc.tls.ca", "missing-ca.pem",
        ":12:", "upstreams.billing.tls.server_name", "`bad name` is not a valid TLS server name",
    ]),
    ("unclosed-variable.yaml", 2, &[
        ":5:10:", "admin.token", "`${ADMIN_TOKEN_FOR_GATEWAY` has no closing `}`",
        ":11:14:", "routes[0].request_headers.set.x-r", "`${NOPE_C` has no closing",
    ]),
    ("bad-format.yaml", 2, &[
        ":5:9:", "formats.e164", "not a regular expression: unclosed counted repetition",
        ":6:11:", "formats.unused", "unclosed group",
    ]),
    ("typo-beside-plain-scalars.yaml", 1, &[":20:1:", "unknown field `log_levle`"]),
    ("variable-in-key.yaml", 1, &[":5:3:", "`${UPSTREAM_NAME}` in a key is not read from the environment"]),
    ("schema-ref-to-nothing.yaml", 1, &[":8:", "routes[0].validate.body", "`$ref: #/$defs/Nope` names nothing here"]),
    ("huge-count.yaml", 1, &[":5:70:", "upstreams.u.limits.max_connections", "`99999999999999999999999` is too large here"]),
    ("trace-method.yaml", 1, &[":6:", "routes[0].match.methods[1]", "answers every `TRACE` with 501"]),
    ("listener-clash.yaml", 3, &[
        ":5:", "listeners[1].bind", "`0.0.0.0:44601` is bound by listener `a` too",
        ":6:", "listeners[2].redirect_https", "1 to 65535",
        ":11:", "routes[0].cors.allow_origins[0]", "`https://*example.com` is not an origin",
    ]),
    ("admin-and-dual-stack-clash.yaml", 2, &[
        ":5:", "listeners[1].bind", "`[::]:44611` is bound by listener `a` too",
        ":7:", "admin.bind", "`127.0.0.1:44611` is bound by listener `a` too",
    ]),
    ("bad-target-url.yaml", 6, &[
        ":7:", "upstreams.app.targets[0]", "`127.0.0.1:9001`", "`http://` or `https://`",
        ":8:", "upstreams.app.targets[1].url", "scheme, host and port only",
        ":9:", "upstreams.app.targets[2]", "`http://127.0.0.1:0`: a port is a number from 1 to 65535",
        ":10:", "upstreams.app.targets[3]", "`https://api.internal:99999`: a port",
        ":11:", "upstreams.app.targets[4]", "without a `#fragment`",
        ":12:", "upstreams.probed.health.active.path", "`/probe#frag` is not a path",
    ]),
    ("bad-weighted-target.yaml", 1, &[":7:", "upstreams.app.targets[0].wieght", "unknown field `wieght`"]),
    ("framing-headers.yaml", 3, &[
        ":7:", "routes[0].static.headers.content-length", "the gateway's to write",
        ":10:", "routes[1].static.body", "a 205 response has no body",
        ":14:", "routes[2].response_headers.set.Transfer-Encoding", "cannot be set",
    ]),
    ("cors-fields-set-by-hand.yaml", 2, &[
        ":4:", "security_headers.set.Access-Control-Allow-Origin", "routes[0] (`api`) has `cors`",
        ":12:", "routes[0].response_headers.set.access-control-allow-credentials", "leave them to it",
    ]),
    ("dot-segment-after-parameter.yaml", 1, &[":6:", "routes[0].match.path", "`/a/{id}/../b` is `/a/b`", "a parameter is gone"]),
    ("bad-bind.yaml", 1, &[":5:", "listeners[1].bind", "`localhost:8080`", "IP:PORT"]),
    ("bad-duration.yaml", 1, &[":7:", "upstreams.app.timeouts.connect", "`soon` is not a duration"]),
    ("unset-env-with-and-without-default.yaml", 1, &[":11:", "routes[0].static.body", UNSET, "is not set"]),
    ("unset-env.yaml", 1, &[":4:", "listeners[0].bind", "environment variable", UNSET, "is not set"]),
    ("two-actions.yaml", 1, &[":5:", "routes[0]", "exactly one of `upstream`, `echo`, `static`, `redirect` or `aggregate`"]),
    ("bad-strip-prefix.yaml", 1, &[":10:", "routes[0].rewrite.strip_prefix", "`/v1` is not a prefix"]),
    ("bad-header-name.yaml", 2, &[
        ":10:", "routes[0].match.headers[0].name", "`X Tenant` is not a header name",
        ":13:", "routes[0].request_headers.set.X-Forwarded-By:", "not a valid header name",
    ]),
    ("version-two-sources.yaml", 1, &[":8:", "routes[0].match.version", "exactly one of `path_prefix`, `header` or `accept_param`"]),
    // No cascade: what failed to compile is not also called unknown.
    ("failed-provider-not-unknown.yaml", 2, &[
        ":7:", "auth.hs", "at least 32 bytes",
        ":16:", "routes[1].authenticate[1]", "unknown auth provider `nope` (defined: hs)",
    ]),
    ("failed-upstream-in-aggregate.yaml", 2, &[
        ":6:", "upstreams.users.targets[0]", "`ftp://127.0.0.1:9001`",
        "routes[1].aggregate.calls.extra.upstream", "unknown upstream `nowhere` (defined: users)",
    ]),
    ("many-problems-at-once.yaml", 9, &[
        ":6:", "trusted_proxies[0]", "`10.0.0.0/33`",
        ":10:", "upstreams.app.timeouts.connect", "a unit is needed",
        ":14:", "routes[0].upstreem", "unknown field `upstreem`",
        ":16:", "routes[1].match.methods", "expected a list",
        ":17:", "routes[1].upstream", "unknown upstream `missing`",
        ":21:", "routes[2].retry.attempts", "`lots`: expected a whole number",
        ":22:", "routes[2].bogus", "unknown field `bogus`",
        ":25:", "routes[3].upstream", "`PORTCULLIS_TEST_SURELY_UNSET` is not set",
        ":28:", "routes[3].request_headers.set.X-A", "`PORTCULLIS_TEST_SURELY_UNSET_TOO` is not set",
    ]),
    ("unknown-top-level-key.yaml", 1, &[":2:", "listners", "did you mean `listeners`?"]),
    ("two-unknown-keys.yaml", 2, &[":8:", "routes[0].rate_limt", "did you mean `rate_limit`?", ":12:", "routes[1].authenticat", "did you mean `authenticate`?"]),
    ("two-wrong-types.yaml", 2, &[":8:", "routes[0].max_body_size", "`big` is not a size", ":9:", "routes[0].websocket", "expected `true` or `false`"]),
    ("two-unset-variables.yaml", 2, &[":4:", "listeners[0].bind", "`PORTCULLIS_TEST_SURELY_UNSET` is not set", ":10:", "routes[0].static.body", "`PORTCULLIS_TEST_SURELY_UNSET_TOO` is not set"]),
    ("bad-percent.yaml", 1, &[":7:", "upstreams.app.retry.budget.ratio", "between 0% and 100%"]),
    ("bad-ip-list.yaml", 1, &[":8:", "routes[0].ip.allow[0]", "`10.0.0.300/8` is not an IP address or CIDR"]),
    ("zero-rate.yaml", 1, &[":8:", "routes[0].rate_limit[0].rate", "at least one request"]),
    ("zero-timeout.yaml", 1, &[":5:", "upstreams.u.timeouts.read", "at least 1ms"]),
    ("huge-limits.yaml", 3, &[
        ":5:", "rate_limit_store.max_keys", "expected 1 or more",
        ":10:", "routes[0].rate_limit[0].burst", "expected 1000000000 or less",
        "routes[0].rate_limit[1].rate", "at most 1000000000 requests a period",
    ]),
    ("limit-settings.yaml", 2, &[":5:", "rate_limit_store.redis.timeout", "at least 1ms", ":10:", "routes[0].rate_limit[0].name", "`#` is kept"]),
    ("public-admin-without-token.yaml", 1, &[":4:", "admin.bind", "set `admin.token`"]),
    ("admin-token-from-an-empty-variable.yaml", 1, &[":7:", "admin.token", "the token is empty"]),
    ("groups-and-scopes-read-two-ways.yaml", 8, &[
        ":12:", "consumers[0].groups[0]", "`guests,admins` holds `,`",
        "consumers[0].groups[1]", "` staff` has whitespace at an end",
        "consumers[0].groups[2]", "an empty group name",
        ":13:", "consumers[0].scopes[0]", "`read write` holds a space",
        ":20:", "routes[0].authorize.scopes[0]", "is not a scope",
        ":21:", "routes[0].authorize.any_scopes[0]", "an empty scope",
        ":22:", "routes[0].authorize.groups.allow[0]", "routes[0].authorize.groups.deny[0]",
    ]),
    ("introspection-secret-from-an-empty-variable.yaml", 2, &[
        ":10:", "auth.opaque.introspection.client_secret", "the client secret is empty or blank (a `${VAR}` set to nothing?)",
        ":12:", "auth.written.introspection.client_secret",
    ]),
    ("redirect-parameter-in-host.yaml", 1, &[":8:", "routes[0].redirect.to", "an open redirect"]),
    ("top-level-type-error-beside-others.yaml", 4, &[
        ":4:", "trusted_proxies[0]", ":5:", "log_level", ":6:", "shutdown_timeout", ":8:", "unknown upstream `nope`",
    ]),
    ("stray-misspelt-key-beside-the-right-one.yaml", 2, &[
        ":7:", "unknown upstream `nope`", ":8:", "unknown field `rotues`",
    ]),
    ("ports-that-reach-nothing.yaml", 4, &[
        ":5:", "tracing.otlp.endpoint", "`http://127.0.0.1:0`: a port is a number from 1 to 65535",
        ":8:", "auth.keys.jwt.jwks_uri", "idp.example:99999",
        ":10:", "auth.opaque.introspection.endpoint", "idp.example:+443",
        ":12:", "upstreams.app.targets[0]", "127.0.0.1:+80",
    ]),
    ("otlp-endpoint-with-query.yaml", 1, &[":5:", "tracing.otlp.endpoint", "`/v1/traces` is appended", "put credentials in `headers`"]),
    ("no-targets.yaml", 1, &[":5:", "upstreams.app.targets", "at least one target"]),
    ("one-word-given-a-list.yaml", 2, &[
        ":3:12:", "log_level: expected one value, not a list", ":4:23:", "access_log.format: a list",
    ]),
    ("jwt-without-key.yaml", 1, &[":6:", "auth.tokens.jwt", "exactly one key source"]),
    ("many-errors.yaml", 7, &[
        ":3:", "listeners[0].bind", "`127.0.0.1:99999`",
        ":4:", "trusted_proxies[0]", "`10.0.0.0/33` is not an IP address or CIDR",
        ":7:", "upstreams.app.targets[0]", "`ftp://127.0.0.1:9001`",
        ":11:", "routes[0].upstream", "unknown upstream `missing`",
        ":14:", "routes[1].redirect.status", "routes[1].redirect.to", "`{nope}` is not a parameter",
        ":17:", "routes[2].static.status", "`99` is not a final HTTP status",
    ]),
];

#[test]
fn broken_configs_report_located_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/broken");
    for (name, count, expected) in BROKEN {
        let (code, stdout, stderr) = check(&dir.join(name));
        assert_eq!(code, Some(1), "{name}: stdout {stdout:?}\nstderr:\n{stderr}");
        for want in *expected {
            let want = match want.strip_prefix(':') {
                Some(_) => format!("{name}{want}"),
                None => want.to_string(),
            };
            assert!(stderr.contains(&want), "{name}: no `{want}` in stderr:\n{stderr}");
        }
        for internal in ["untagged enum", "tagged enum", "invalid u", "sequence start", "mapping start", "[67, 69"] {
            assert!(!stderr.contains(internal), "{name}: library words `{internal}` in:\n{stderr}");
        }
        let errors = stderr.lines().filter(|l| l.starts_with("error: ")).count();
        assert_eq!(errors, *count, "{name}: error lines in stderr:\n{stderr}");
        assert!(
            stderr.contains(&format!("{name}: {count} error(s)")),
            "{name}: no summary line for {count} error(s) in stderr:\n{stderr}"
        );
    }
}

#[test]
fn every_broken_config_is_in_the_table() {
    for file in yaml_files("tests/configs/broken") {
        let name = file.file_name().and_then(|n| n.to_str()).expect("UTF-8 file name");
        assert!(
            BROKEN.iter().any(|(n, ..)| *n == name),
            "tests/configs/broken/{name} is not covered by the BROKEN table in check_cli.rs"
        );
    }
}

/// Stdout of a command that must succeed.
fn stdout_of(args: &[&str]) -> String {
    let out = portcullis(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "portcullis {args:?} failed: {stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn schema_is_json_with_the_top_level_keys() {
    let stdout = stdout_of(&["schema"]);
    let schema: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("schema is not JSON ({e}):\n{stdout}"));
    let properties =
        schema["properties"].as_object().unwrap_or_else(|| panic!("no `properties` object in the schema:\n{stdout}"));
    for key in ["listeners", "upstreams", "routes"] {
        assert!(properties.contains_key(key), "no `{key}` in properties:\n{stdout}");
    }
}

#[test]
fn version_prints_name_and_version() {
    let stdout = stdout_of(&["version"]);
    // `portcullis 0.1.0 (commit 0123456789ab, profile dev)`: the commit
    // and the cargo profile it was built from (the tests build `dev`).
    let want = format!("portcullis {} (commit ", env!("CARGO_PKG_VERSION"));
    let line = stdout.trim();
    assert!(line.starts_with(&want) && line.ends_with(", profile dev)"), "{line}");
    let commit = &line[want.len()..line.len() - ", profile dev)".len()];
    assert!(commit == "unknown" || commit.len() >= 7 && commit.bytes().all(|b| b.is_ascii_hexdigit()), "{line}");
}

/// A config that loads but that `check` warns about, one of each warning.
fn warned_config(dir: &Path) -> String {
    // An expired listener certificate.
    let mut params = rcgen::CertificateParams::new(vec!["gw.example".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    // Followed by a certificate that is not its issuer (a chain out of order).
    let mut other = rcgen::CertificateParams::new(vec!["other.example".to_string()]).unwrap();
    other.distinguished_name.push(rcgen::DnType::CommonName, "unrelated.example");
    let other = other.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem() + &other.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("pets.yaml"), PETS).unwrap();
    let weak = format!("$2y$05${}", "a".repeat(53));
    format!(
        r#"listeners:
  - {{ name: public, bind: "0.0.0.0:0" }}
  - name: secure
    bind: "127.0.0.1:0"
    tls: {{ certificates: [ {{ cert: cert.pem, key: key.pem }} ] }}
trusted_proxies: [ 0.0.0.0/0 ]
path_normalization:
  merge_slashes: false
admin: {{ bind: "0.0.0.0:0", token: a-token-of-sixteen-chars }}
upstreams:
  used: {{ targets: [ "http://127.0.0.1:9" ] }}
  spare: {{ targets: [ "http://127.0.0.1:10" ], timeouts: {{ connect: 90s }} }}
auth:
  hs:
    jwt: {{ algorithms: [HS256], secret: a-secret-of-at-least-thirty-two-bytes! }}  # to be ${{JWT_SECRET}}
  staff:
    basic: {{ users: {{ ann: "{weak}" }} }}
  idle:
    api_key: {{ header: X-Key }}
routes:
  - name: api
    match: {{ path_prefix: /api }}
    upstream: used
    authenticate: [ hs ]
    cors: {{ allow_origins: [ "*" ] }}
    request_headers: {{ set: {{ X-Token: "${{NOT_READ}}" }} }}
  - name: ops
    match: {{ path_prefix: /ops }}
    upstream: used
    authenticate: [ staff ]
  - name: typo
    match: {{ path: /typo }}
    upstream: used
    validate: {{ query: {{ id: {{ type: string, format: uuuid }}, n: {{ type: integer, minimum: 5, maximum: 1 }}, m: {{ type: string, maxlength: 3 }} }} }}
  - name: pct
    match: {{ path: "/k/a%2Fb" }}
    upstream: used
  - {{ name: query, match: {{ path: "/q?x=1" }}, upstream: used }}
apis:
  - name: pets
    openapi: pets.yaml
    upstream: used
"#
    )
}

/// An API document under `/api/v2` (which route `api`'s prefix covers),
/// with a format nothing checks.
const PETS: &str = r#"openapi: 3.0.3
info: { title: pets, version: "1" }
servers: [ { url: "https://pets.example/api/v2" } ]
paths:
  /pets/{id}:
    get:
      operationId: getPet
      parameters:
        - { name: id, in: path, required: true, schema: { type: string, format: e164x } }
      responses: { "200": { description: ok } }
"#;

#[test]
fn warnings_are_named_located_and_silenced_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    let yaml = warned_config(dir.path());
    std::fs::write(&path, &yaml).unwrap();
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, Some(0), "warnings do not stop a config: {stderr}");
    #[rustfmt::skip]
    let expected = [
        ("credentials-over-http", ":2:", "listeners[0].bind"),
        ("certificate-expiring", ":5:", "listeners[1].tls.certificates[0].cert"),
        ("certificate-chain-order", ":5:", "listeners[1].tls.certificates[0].cert"),
        ("trusted-proxies-everyone", ":6:", "trusted_proxies[0]"),
        ("weakened-normalization", ":8:", "path_normalization.merge_slashes"),
        ("public-admin", ":9:", "admin.bind"),
        ("unused-upstream", ":12:", "upstreams.spare"),
        ("literal-secret", ":15:", "auth.hs.jwt.secret"),
        ("weak-password-hash", ":17:", "auth.staff.basic.users.ann"),
        ("unused-auth-provider", ":19:", "auth.idle"),
        ("cors-any-origin-with-auth", ":25:", "routes[0].cors.allow_origins[0]"),
        ("quoted-variable", ":26:", "routes[0].request_headers.set.X-Token"),
        ("unlimited-expensive-auth", ":30:", "routes[1].authenticate"),
        ("strict-api-shadowed", ":22:", "routes[0].match"),
        ("unknown-format", ":34:", "routes[2].validate.query.id.format"),
        ("impossible-schema", ":34:", "routes[2].validate.query.n"),
        ("unknown-keyword", ":34:", "routes[2].validate.query.m.maxlength"),
        ("unreachable-route-path", ":36:", "routes[3].match.path"),
        ("unreachable-route-path", ":38:", "routes[4].match.path"),
        ("timeout-beyond-budget", ":12:", "upstreams.spare.timeouts.connect"),
        ("unknown-format", ":41:", "apis[0].openapi"),
    ];
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (name, line, at) in expected {
        let want = format!("gw.yaml{line}");
        assert!(
            lines
                .iter()
                .any(|l| l.ends_with(&format!("[{name}]")) && l.contains(&want) && l.contains(&format!(" {at}: "))),
            "no `{name}` warning at {want} {at}:\n{stderr}"
        );
    }
    assert!(!stderr.contains("a-secret-of-at-least"), "a warning never shows a secret:\n{stderr}");
    assert!(stdout.contains(&format!("ok, {} warning(s)", expected.len())), "{stdout}");

    // --strict: the same warnings are errors.
    let out = portcullis(&["check", "--strict", "--config", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));

    // Allowed on purpose: silent; an unknown name is an error.
    let mut names: Vec<&str> = expected.iter().map(|(n, ..)| *n).collect();
    names.dedup();
    std::fs::write(&path, format!("{yaml}warnings: {{ allow: [ {} ] }}\n", names.join(", "))).unwrap();
    let (code, stdout, stderr) = check(&path);
    assert_eq!((code, stdout.trim_end().ends_with(": ok")), (Some(0), true), "{stdout}{stderr}");
    std::fs::write(&path, format!("{yaml}warnings: {{ allow: [ unused-upstreams ] }}\n")).unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("warnings.allow[0]: unknown warning `unused-upstreams`"), "{stderr}");
}

/// The editor schema (`portcullis schema`) as the documents are read: the
/// YAML as JSON, `${VAR}`s replaced from the environment.
fn schema_errors(schema: &jsonschema::Validator, file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let options = serde_saphyr::options! { strict_booleans: true }.with_properties(std::env::vars().collect());
    let doc: serde_json::Value =
        serde_saphyr::from_str_with_options(&text, options).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    schema.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect()
}

#[test]
fn the_editor_schema_accepts_every_example() {
    let schema: serde_json::Value = serde_json::from_str(&stdout_of(&["schema"])).unwrap();
    let schema = jsonschema::validator_for(&schema).expect("the schema compiles");
    for file in yaml_files("examples") {
        let errors = schema_errors(&schema, &file);
        assert!(errors.is_empty(), "{}: the schema refuses what check accepts:\n{}", file.display(), errors.join("\n"));
    }
}

#[test]
fn the_editor_schema_refuses_what_check_cannot_read() {
    // Every broken config that fails as it is read (a wrong key, type or
    // value) is refused by the editor schema too; the semantic ones (an
    // unknown upstream, a bad CIDR) are beyond a schema.
    let schema: serde_json::Value = serde_json::from_str(&stdout_of(&["schema"])).unwrap();
    let schema = jsonschema::validator_for(&schema).expect("the schema compiles");
    let mut structural = 0;
    for file in yaml_files("tests/configs/broken") {
        let Err(_) = portcullis::config::load_file(&file) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        // Not YAML at all (a duplicate key, a `${VAR}` in a flow mapping): nothing to hold a schema to.
        // Read as the gateway reads it: YAML 1.2 booleans.
        let options = serde_saphyr::options! { strict_booleans: true };
        let Ok(doc) = serde_saphyr::from_str_with_options::<serde_json::Value>(&text, options) else { continue };
        if text.contains("${") {
            continue; // unset variables: the schema sees the text as written
        }
        structural += 1;
        assert!(
            schema.iter_errors(&doc).next().is_some(),
            "{}: check refuses it, the schema accepts it",
            file.display()
        );
    }
    assert!(structural >= 12, "only {structural} structural broken configs");
}

#[test]
fn the_editor_schema_takes_variables_where_they_are_read() {
    // The editor sees the file as written: `${NAME}` where a number, a
    // switch or a unit goes is what the gateway reads from the environment.
    let schema: serde_json::Value = serde_json::from_str(&stdout_of(&["schema"])).unwrap();
    let schema = jsonschema::validator_for(&schema).expect("the schema compiles");
    let yaml = "listeners:\n  - name: main\n    bind: ${BIND}\n    limits:\n      max_body_size: ${MAX_BODY}\n      header_read_timeout: ${HEAD_TIMEOUT}\nshutdown_timeout: ${DRAIN}\nupstreams:\n  app:\n    targets: [ \"http://127.0.0.1:9001\" ]\n    pool:\n      max_idle_per_target: ${IDLE}\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    upstream: app\n    websocket: ${WS}\n    rate_limit:\n      - key: ip\n        rate: ${RATE}\n";
    let doc: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
    let errors: Vec<String> = schema.iter_errors(&doc).map(|e| format!("{}: {e}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // Anything else there is still refused.
    let doc: serde_json::Value =
        serde_saphyr::from_str(&yaml.replace("${IDLE}", "lots").replace("${DRAIN}", "10sec")).unwrap();
    assert_eq!(schema.iter_errors(&doc).count(), 2);
}

/// `portcullis --config FILE` serves FILE as `run --config FILE` does (as
/// `nginx -c` and `envoy -c` are typed): a broken one is refused the same way.
#[test]
fn config_without_a_command_is_run() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "listeners: [ { name: gw, bind: \"127.0.0.1:0\" } ]\nroutes: [ { name: r } ]\n").unwrap();
    let path = file.display().to_string();
    let top = portcullis(&["--config", &path]);
    let run = portcullis(&["run", "--config", &path]);
    let text = |o: &Output| format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(top.status.code(), run.status.code());
    assert_ne!(top.status.code(), Some(0));
    assert!(text(&top).contains("broken.yaml") && text(&top).contains("routes[0]"), "{}", text(&top));
    assert!(!portcullis(&["--config", &path, "check"]).status.success(), "a config and a command do not mix");
}

/// A URL the config refuses is shown without its user part or credential
/// parameters: error messages reach journals, CI logs and `reload` answers.
#[test]
fn refused_urls_are_shown_without_their_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(
        &path,
        r#"listeners: [ { name: p, bind: "127.0.0.1:0" } ]
upstreams:
  u: { targets: [ "http://user:UpSecretPW@10.0.0.1:80" ] }
  v: { targets: [ "ftp://ftpuser:FtpSecretPW@10.0.0.2" ] }
rate_limit_store: { redis: { url: "rediss://:RedisSecretPW@redis.internal:6379/x?y" } }
tracing: { otlp: { endpoint: "ftp://o:OtlpSecretPW@collector:4318" } }
routes:
  - { name: a, match: { path: /a }, upstream: u }
  - { name: b, match: { path: /b }, upstream: v }
"#,
    )
    .unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, Some(1), "{stderr}");
    for secret in ["UpSecretPW", "FtpSecretPW", "RedisSecretPW", "OtlpSecretPW"] {
        assert!(!stderr.contains(secret), "{secret} shown:\n{stderr}");
    }
    assert!(stderr.contains("upstreams.u.targets[0]") && stderr.contains("http://<redacted>@10.0.0.1:80"), "{stderr}");
    assert!(stderr.contains("tracing.otlp.endpoint") && stderr.contains("rate_limit_store.redis.url"), "{stderr}");
    assert!(stderr.contains("TLS to Redis (`rediss://`) is not supported yet"), "{stderr}");
}

/// A value from the environment is never shown in a problem (it may be a
/// secret set in the wrong place), whichever check finds it; a `${NAME}`
/// read earlier does not hide the words of a problem with a value written
/// in the file; and a column past non-ASCII text quotes the right value.
#[test]
fn problems_never_show_environment_values_nor_hide_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(
        &path,
        "admin:\n  bind: ${PORTCULLIS_TEST_SECRET}\nlisteners:\n  - name: gw\n    bind: ${PORTCULLIS_TEST_SECRET}\n    \
         limits:\n      idle_timeout: ${PORTCULLIS_TEST_SECRET}\n      max_body_size: 10k\nlog_level: verbose\n\
         routes:\n  - { name: r, match: { path_prefix: / }, static: { body: ok } }\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(!stderr.contains("hunter2"), "an environment value shown:\n{stderr}");
    for (at, said) in [
        ("admin.bind", "`${PORTCULLIS_TEST_SECRET}` is not an `IP:PORT` address"),
        ("listeners[0].bind", "`${PORTCULLIS_TEST_SECRET}` is not an `IP:PORT` address"),
        ("listeners[0].limits.idle_timeout", "not a duration"),
        ("listeners[0].limits.max_body_size", "`10k` is not a size"),
        ("log_level", "`verbose`"),
    ] {
        assert!(stderr.lines().any(|l| l.contains(at) && l.contains(said)), "{at}: {said}:\n{stderr}");
    }

    // The reader's first problem, after a `${NAME}` it read well: in words.
    std::fs::write(
        &path,
        "listeners:\n  - name: gw\n    bind: ${PORTCULLIS_TEST_SURELY_UNSET:-127.0.0.1:0}\n    \
         limits:\n      max_body_size: 10k\nlog_level: verbose\n\
         routes:\n  - { name: r, match: { path_prefix: / }, static: { body: ok } }\n",
    )
    .unwrap();
    let (_, _, stderr) = check(&path);
    assert!(stderr.contains("listeners[0].limits.max_body_size: `10k` is not a size"), "{stderr}");
    assert!(stderr.lines().any(|l| l.contains("log_level: `verbose`: expected one of `error`")), "{stderr}");

    std::fs::write(
        &path,
        "listeners:\n  - { name: \"日本語日本語\", bind: \"127.0.0.1:0\", limits: { idle_timeout: 5 } }\n\
         routes:\n  - { name: r, match: { path_prefix: / }, static: { body: ok } }\n",
    )
    .unwrap();
    let (_, _, stderr) = check(&path);
    assert!(stderr.contains("`5` is not a duration"), "{stderr}");

    // A default holding a variable it does not close is taken as text.
    std::fs::write(
        &path,
        "listeners: [ { name: p, bind: \"127.0.0.1:0\" } ]\nroutes:\n  - name: a\n    match: { path: /a }\n    \
         static:\n      body: ${PORTCULLIS_TEST_SURELY_UNSET:-${PORTCULLIS_TEST_WORD}\n  - name: b\n    \
         match: { path: /b }\n    static:\n      body: ${PORTCULLIS_TEST_SURELY_UNSET:-${PORTCULLIS_TEST_WORD}}\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, Some(1), "{stderr}");
    let unclosed: Vec<&str> = stderr.lines().filter(|l| l.contains("has no closing")).collect();
    assert_eq!(unclosed.len(), 1, "{stderr}");
    assert!(unclosed[0].contains("routes[0].static.body"), "{stderr}");
}

/// Values the editor schema takes and the reader refuses (a duration past
/// ten years): each is said, and the problems past them too (the first
/// one hid every other).
#[test]
fn values_beyond_the_schema_hide_no_other_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(
        &path,
        "shutdown_timeout: 5000d\nlisteners:\n  - { name: gw, bind: \"127.0.0.1:0\", limits: { idle_timeout: 9000d } }\n\
         routes:\n  - { name: r, match: { path_prefix: / }, upstream: nope }\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, Some(1), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 3, "{stderr}");
    assert!(errors[0].contains(":1:") && errors[0].contains("`5000d` is too long"), "{stderr}");
    assert!(errors[1].contains("listeners[0].limits.idle_timeout: `9000d` is too long"), "{stderr}");
    assert!(errors[2].contains("routes[0].upstream: unknown upstream `nope`"), "{stderr}");

    // A value cut so, read from the environment: its `${NAME}` is shown, in file order.
    std::fs::write(
        &path,
        "shutdown_timeout: 9000d\nlisteners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nupstreams:\n  u:\n    \
         targets: [ \"http://127.0.0.1:9\" ]\n    timeouts:\n      connect: ${PORTCULLIS_TEST_DURATION}\n\
         routes:\n  - { name: r, match: { path_prefix: / }, upstream: nope }\n",
    )
    .unwrap();
    let (_, _, stderr) = check(&path);
    assert!(!stderr.contains("31415926"), "an environment value shown:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert!(
        errors.iter().any(|e| e.contains("timeouts.connect: `${PORTCULLIS_TEST_DURATION}` is too long")),
        "{stderr}"
    );
    let lines: Vec<usize> = errors.iter().filter_map(|e| e.split(':').nth(2)?.parse().ok()).collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "in file order: {stderr}");
}

/// `$${NAME}` is the documented way to write `${NAME}` literally: not a
/// `quoted-variable` warning, where a quoted `"${NAME}"` is.
#[test]
fn the_dollar_escape_is_not_a_quoted_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(
        &path,
        "listeners: [ { name: p, bind: \"127.0.0.1:0\" } ]\nroutes:\n  - name: a\n    match: { path: /a }\n    static:\n      body: $${LIT}\n  - name: b\n    match: { path: /b }\n    static:\n      body: \"${LIT}\"\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, Some(0), "{stderr}");
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("[quoted-variable]")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("routes[1].static.body"), "{stderr}");
}

/// A config is a regular file of at most 64 MiB: `/dev/zero` is not read
/// until memory runs out, a FIFO is not waited on.
#[test]
fn what_is_not_a_config_file_is_refused_at_once() {
    let (code, _, stderr) = check(Path::new("/dev/zero"));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("cannot read the config file: not a regular file"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len((64 << 20) + 1).unwrap();
    let (code, _, stderr) = check(&big);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("larger than 64 MiB"), "{stderr}");
    // Latin-1 text: where it stops being UTF-8.
    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(&latin1, b"listeners:\n  - { name: caf\xe9, bind: \"127.0.0.1:0\" }\n").unwrap();
    let (code, _, stderr) = check(&latin1);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("not UTF-8 text at line 2, column 16"), "{stderr}");
}

/// Files a config names (certificates, keys, CA bundles, htpasswd, JWKS,
/// public keys) are held to the config's own rule: a FIFO is not waited on
/// (a reload waited for ever, and SIGTERM behind it), `/dev/zero` is not
/// read until memory runs out. Every such file is said in one run.
#[test]
fn files_a_config_names_are_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.pem");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let config = dir.path().join("files.yaml");
    std::fs::write(
        &config,
        "listeners:\n\
         \x20 - name: tls\n\
         \x20   bind: \"127.0.0.1:0\"\n\
         \x20   tls:\n\
         \x20     certificates: [ { cert: fifo.pem, key: /dev/zero } ]\n\
         \x20     client_auth: { ca: /dev/zero }\n\
         auth:\n\
         \x20 users: { basic: { htpasswd: fifo.pem } }\n\
         \x20 keys: { jwt: { jwks_file: /dev/zero, algorithms: [RS256] } }\n\
         \x20 pem: { jwt: { public_key_file: fifo.pem, algorithms: [RS256] } }\n\
         routes:\n\
         \x20 - { name: r, match: { path_prefix: / }, static: { body: hi } }\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, _, stderr) = check(&config);
    assert_eq!(code, Some(1), "{stderr}");
    for at in [
        "listeners[0].tls.certificates[0].cert",
        "listeners[0].tls.client_auth.ca",
        "auth.users.basic.htpasswd",
        "auth.keys.jwt.jwks_file",
        "auth.pem.jwt.public_key_file",
    ] {
        let line = stderr.lines().find(|l| l.contains(at)).unwrap_or_else(|| panic!("no problem at {at}: {stderr}"));
        assert!(line.contains("not a regular file"), "{line}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "read at once, not waited on");
}

/// `${…}` that the YAML library never reads (block and quoted scalars, `$$`)
/// is text, whatever follows it: no unclosed-variable error.
#[test]
fn dollar_braces_in_text_the_library_does_not_read_are_fine() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(
        &path,
        r#"listeners:
  - { name: main, bind: "127.0.0.1:0" }
routes:
  - name: script
    match: { path: /install.sh }
    static:
      body: |
        #!/bin/sh
        echo ${arr[0]} ${x.y} ${VAR:=d} ${VAR#pre} $${HOME
        const greeting = `Hello ${user.name`;
      headers:
        x-a: "a\" ${X"
        x-b: "one
          ${USER.name"
        x-c: 'it''s ${Y'
        x-d: costs $${Z
"#,
    )
    .unwrap();
    let (code, stdout, stderr) = check(&path);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
}

/// `--watch` without a config file had nothing to watch and served the
/// embedded demo as if all were well: refused, saying why.
#[test]
fn watch_without_a_config_file_is_refused() {
    for args in [&["--watch"][..], &["run", "--watch"][..]] {
        let out = portcullis(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--watch needs --config FILE"), "{args:?}: {stderr}");
    }
}

/// `hash-key` hashes the key a request can send: one trailing line end is
/// `echo`'s and dropped; spaces at an end (the gateway trims a header's
/// value), a second line or control bytes made a hash no request matched,
/// and are refused.
#[test]
fn hash_key_hashes_only_keys_a_request_can_send() {
    use std::io::Write;
    let hash = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("hash-key")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let want = portcullis::hash_key("key-mobile");
    for ok in ["key-mobile", "key-mobile\n", "key-mobile\r\n"] {
        assert_eq!(hash(ok), (Some(0), want.clone()), "{ok:?}");
    }
    for bad in [" key-mobile", "key-mobile \n", "key-mobile\nsecond", "key\tmobile", "clé"] {
        assert_eq!(hash(bad).0, Some(1), "{bad:?}");
    }
}

/// `run` with a config that does not compile: one log event per problem,
/// each a line of its own with its time and level (the list was one event
/// spread over lines without either), then a summary; exit status 1.
#[test]
fn run_logs_each_problem_of_a_refused_config_as_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sem.yaml");
    std::fs::write(
        &path,
        "listeners: [ { name: gw, bind: \"127.0.0.1:0\" } ]\nroutes:\n  - { name: r, match: { path_prefix: / }, upstream: nope }\n  - { name: s, match: { path_prefix: /s }, upstream: nope2 }\n",
    )
    .unwrap();
    let out = portcullis(&["run", "--config", &path.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in &lines {
        assert!(line.starts_with("20") && line.contains(" ERROR "), "a whole event per line: {line}");
    }
    assert!(lines[0].contains("unknown upstream `nope`") && lines[1].contains("unknown upstream `nope2`"), "{text}");
}

/// An address list entry with bits past its prefix is read as the whole
/// network: `check` says so where it is written (NGINX warns too).
#[test]
fn cidrs_with_host_bits_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.yaml");
    std::fs::write(
        &path,
        "listeners: [ { name: gw, bind: \"127.0.0.1:0\" } ]\ntrusted_proxies: [ 10.0.0.1/8, 192.168.0.0/16 ]\nroutes:\n  - name: r\n    match: { path_prefix: / }\n    echo: {}\n    ip: { allow: [ \"10.1.2.3/24\", \"10.9.9.9\" ], deny: [ \"2001:db8::1/32\" ] }\n",
    )
    .unwrap();
    let (code, _, stderr) = check(&path);
    assert_eq!(code, Some(0), "{stderr}");
    let warned: Vec<&str> = stderr.lines().filter(|l| l.ends_with("[cidr-host-bits]")).collect();
    assert_eq!(warned.len(), 3, "{stderr}");
    for (at, read_as) in [
        (":2:20: trusted_proxies[0]", "`10.0.0.0/8`"),
        (": routes[0].ip.allow[0]", "`10.1.2.0/24`"),
        (": routes[0].ip.deny[0]", "`2001:db8::/32`"),
    ] {
        assert!(warned.iter().any(|l| l.contains(at) && l.contains(read_as)), "{at}: {stderr}");
    }
}

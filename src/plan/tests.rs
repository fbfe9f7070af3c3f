//! The plan as a whole: whatever a config file says, compiling it never panics.

#[cfg(test)]
mod fuzz {
    /// Config text built from the file's own keys and values, mangled:
    /// loading and compiling never panic; a refusal names a path.
    #[test]
    fn fuzz_config() {
        use proptest::prelude::*;
        let seed = r#"listeners:
  - { name: public, bind: "127.0.0.1:0", limits: { max_body_size: 1MiB, header_read_timeout: 5s } }
upstreams:
  u: { targets: [ "http://127.0.0.1:9", { url: "http://127.0.0.1:10", weight: 2 } ], balance: round_robin }
auth:
  k: { api_key: { header: X-API-Key } }
consumers:
  - { id: c, api_keys: [ { sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" } ] }
routes:
  - name: r
    match: { host: "*.example.com", path: "/v1/{id}", methods: [GET] }
    upstream: u
    websocket: true
    rewrite: { strip_prefix: /v1 }
    authenticate: [ k ]
    rate_limit: [ { key: ip, rate: 10/s, burst: 20 } ]
    cors: { allow_origins: [ "https://a.example" ] }
path_normalization: { path_parameters: strip }
"#;
        crate::fuzz::run("config", crate::fuzz::mutated(seed.as_bytes().to_vec(), 8), |bytes| {
            let text = String::from_utf8_lossy(&bytes);
            match crate::config::parse_str(&text, "fuzz.yaml", std::path::Path::new(".")) {
                Ok(loaded) => {
                    if let Err(errors) = crate::plan::compile(&loaded) {
                        prop_assert!(!errors.0.is_empty());
                    }
                }
                Err(errors) => prop_assert!(!errors.0.is_empty()),
            }
            Ok(())
        });
    }
}

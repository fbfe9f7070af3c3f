//! What ships in `deploy/`: the Grafana dashboard and the Prometheus alert
//! rules use only metric names the gateway exports, and `promtool` accepts
//! the rules.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{get, load};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Metric names in a PromQL expression (labels such as `http_route` do not
/// start with these prefixes).
fn metric_names(expr: &str, out: &mut BTreeSet<String>) {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut rest = expr;
    while let Some(at) = rest.find(|c: char| c.is_ascii_alphabetic() || c == '_') {
        let tail = &rest[at..];
        let len = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let word = &tail[..len];
        if ["http_server_", "http_client_", "portcullis_"].iter().any(|p| word.starts_with(p)) {
            out.insert(word.to_string());
        }
        rest = &tail[len..];
    }
}

/// Every sample name the gateway's `/metrics` can show (histograms as
/// `_bucket`, `_sum`, `_count`), from its `# TYPE` lines.
async fn exported() -> BTreeSet<String> {
    let yaml = "listeners:\n  - { name: gw, bind: \"127.0.0.1:0\" }\nadmin: { bind: \"127.0.0.1:0\" }\n";
    let h = portcullis::Gateway::start(&load(yaml, Path::new("."))).await.unwrap();
    let text = get(&format!("http://{}/metrics", h.admin_addr().unwrap()), &[]).await.text();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = rest.split(' ');
        let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.to_string());
        }
    }
    names
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let exported = exported().await;
    assert!(exported.contains("http_server_request_duration_seconds_bucket"), "{exported:?}");

    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("deploy/grafana/portcullis.json")).unwrap()).unwrap();
    let mut used = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels {
        for target in panel["targets"].as_array().into_iter().flatten() {
            metric_names(target["expr"].as_str().expect("expr"), &mut used);
        }
    }
    let rules_text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml")).unwrap();
    let rules: serde_json::Value = serde_saphyr::from_str(&rules_text).expect("alerts.yaml is YAML");
    let mut alerts = 0;
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            metric_names(rule["expr"].as_str().expect("expr"), &mut used);
            alerts += 1;
        }
    }
    assert!(alerts >= 7 && used.len() >= 10, "{alerts} alerts using {used:?}");
    let unknown: Vec<_> = used.difference(&exported).collect();
    assert!(unknown.is_empty(), "deploy/ uses metrics the gateway does not export: {unknown:?}");
    for topic in ["error", "p99", "upstream", "rate-limit", "auth", "reload", "dropped"] {
        let text = format!("{rules_text}{dashboard}").to_lowercase();
        assert!(text.contains(topic), "nothing about {topic} in deploy/");
    }
}

/// `promtool` comes with the Debian package `prometheus` (`.ci/run` installs it).
fn promtool(args: &[&str], file: &str) {
    let out = std::process::Command::new("promtool")
        .args(args)
        .arg(root().join(file))
        .output()
        .expect("promtool runs (apt-get install prometheus; .ci/run installs it)");
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_alert_rules() {
    promtool(&["check", "rules"], "deploy/prometheus/alerts.yaml");
}

/// The rules fire (and stay quiet) as `alerts.test.yaml` says, on made-up
/// series: a dead upstream behind an open breaker, every target ejected, 10% 5xx.
#[test]
fn the_alert_rules_fire_when_they_should() {
    promtool(&["test", "rules"], "deploy/prometheus/alerts.test.yaml");
}

#[test]
fn systemd_accepts_the_service_unit() {
    let Ok(found) = std::process::Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!(
            "SKIPPED systemd_accepts_the_service_unit: systemd-analyze is not installed (Debian package `systemd`)"
        );
        return;
    };
    assert!(found.status.success());
    // The unit as installed, its binary where this build put it.
    let unit = std::fs::read_to_string(root().join("deploy/portcullis.service")).unwrap();
    for must in [
        "DynamicUser=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(must), "the unit lacks `{must}`");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("portcullis.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/portcullis", env!("CARGO_BIN_EXE_portcullis"))).unwrap();
    let out = std::process::Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn the_kubernetes_manifests_hold_together() {
    let dir = root().join("deploy/kubernetes");
    let mut kinds = Vec::new();
    let mut config = None;
    let mut deployment = None;
    for name in ["configmap.yaml", "deployment.yaml", "service.yaml", "pdb.yaml"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(doc["metadata"]["name"], "portcullis", "{name}");
        let kind = doc["kind"].as_str().unwrap().to_string();
        if kind == "ConfigMap" {
            config = doc["data"]["portcullis.yaml"].as_str().map(str::to_string);
        }
        if kind == "Deployment" {
            deployment = Some(doc);
        }
        kinds.push(kind);
    }
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]);
    let d = deployment.unwrap();
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["args"], serde_json::json!(["run", "--config", "/etc/portcullis/portcullis.yaml", "--watch"]));
    let ready = c["readinessProbe"]["exec"]["command"].as_array().unwrap();
    assert!(ready.iter().any(|a| a == "--ready"), "readiness asks /readyz: {ready:?}");
    // The mounted config passes `check`, without warnings.
    let path = tempfile::tempdir().unwrap();
    let file = path.path().join("portcullis.yaml");
    std::fs::write(&file, config.expect("the ConfigMap holds portcullis.yaml")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check", "--strict", "--config"])
        .arg(&file)
        .env("ADMIN_TOKEN", "a-token-for-the-check-0123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

//! The live admin page at `/`, in a real headless Chromium (Debian package
//! `chromium`; `.ci/run` installs it): against a gateway that has served
//! traffic, the page shows its listeners, routes with their requests,
//! refusals and latency, upstream targets with their health, and the
//! config hash, all read by its own script from the admin API. A
//! screenshot of the page, phone-sized, is saved for a human to look at.

use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis::Gateway;

use crate::support::{closed_port, get, load};

/// Runs headless Chromium on `url`: the DOM once its script has run, and
/// a screenshot at `shot`. `None` (with a message) when Chromium is absent.
fn chromium(url: &str, shot: &Path) -> Option<String> {
    let Some(bin) = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        eprintln!("SKIPPED the admin page test: no headless Chromium (Debian package `chromium`; .ci/run installs it)");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        // The page refreshes every 2 s: five seconds of virtual time give
        // it two refreshes, so rates are computed too.
        Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=5000",
                "--window-size=412,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(url)
            .output()
            .expect("chromium runs")
    };
    let dom = run(&["--dump-dom"]);
    assert!(dom.status.success(), "chromium: {}", String::from_utf8_lossy(&dom.stderr));
    let shot_arg = format!("--screenshot={}", shot.display());
    let _ = run(&[&shot_arg]);
    Some(String::from_utf8_lossy(&dom.stdout).into_owned())
}

/// The cells of the table row whose first cell is `first`.
fn row(dom: &str, first: &str) -> Vec<String> {
    let start = dom.find(&format!("<tr><td>{first}</td>")).unwrap_or_else(|| panic!("no row `{first}` in:\n{dom}"));
    let end = start + dom[start..].find("</tr>").unwrap();
    dom[start..end]
        .split("<td")
        .skip(1)
        .map(|c| {
            let text = &c[c.find('>').unwrap() + 1..];
            text[..text.find("</td>").unwrap_or(text.len())].to_string()
        })
        .collect()
}

#[tokio::test]
async fn the_admin_page_shows_what_the_gateway_does() {
    let dead = closed_port().await;
    let yaml = format!(
        "listeners:\n  - {{ name: public, bind: \"127.0.0.1:0\" }}\n\
         admin: {{ bind: \"127.0.0.1:0\" }}\n\
         upstreams:\n  backend: {{ targets: [ \"http://{dead}\" ], health: {{ passive: {{ consecutive_failures: 1 }} }} }}\n\
         auth:\n  keys: {{ api_key: {{ header: X-API-Key }} }}\n\
         consumers:\n  - {{ id: app, api_keys: [ {{ sha256: \"{}\" }} ] }}\n\
         routes:\n\
         \x20 - {{ name: hello, match: {{ path: /hello }}, static: {{ body: hi }} }}\n\
         \x20 - {{ name: limited, match: {{ path: /limited }}, static: {{ body: hi }}, rate_limit: [ {{ key: ip, rate: 1/min, burst: 1 }} ] }}\n\
         \x20 - {{ name: private, match: {{ path: /private }}, static: {{ body: hi }}, authenticate: [ keys ] }}\n\
         \x20 - {{ name: broken, match: {{ path: /broken }}, upstream: backend }}\n",
        portcullis::hash_key("a-key-of-the-app-0001")
    );
    let h = Gateway::start(&load(&yaml, Path::new("."))).await.expect("starts");
    let (public, admin) = (h.addr("public").unwrap(), h.admin_addr().unwrap());
    for _ in 0..20 {
        assert_eq!(get(&format!("http://{public}/hello"), &[]).await.status, 200);
    }
    let mut refused = 0;
    for _ in 0..4 {
        refused += usize::from(get(&format!("http://{public}/limited"), &[]).await.status == 429);
    }
    assert!(refused > 0);
    for _ in 0..3 {
        assert_eq!(get(&format!("http://{public}/private"), &[]).await.status, 401);
    }
    assert_eq!(get(&format!("http://{public}/broken"), &[]).await.status, 502);
    let status = get(&format!("http://{admin}/status"), &[]).await.json();
    let hash = status["config"]["hash"].as_str().unwrap().to_string();

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-page.png");
    let url = format!("http://{admin}/");
    let Some(dom) = tokio::task::spawn_blocking(move || chromium(&url, &shot)).await.unwrap() else { return };
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-page.png");
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000), "no screenshot at {}", shot.display());
    eprintln!("admin page screenshot: {}", shot.display());

    assert!(dom.contains(&hash), "the config hash {hash} is shown");
    assert!(dom.contains(">serving<"), "the state is shown");
    // route, upstream, req/s, 5xx, p50, p99, limited, auth failed, requests
    let hello = row(&dom, "hello");
    assert_eq!(hello[8], "20", "{hello:?}");
    assert!(hello[4].ends_with(" ms"), "a latency: {hello:?}");
    let limited = row(&dom, "limited");
    assert_eq!((limited[6].clone(), limited[8].as_str()), (refused.to_string(), "4"), "{limited:?}");
    let private = row(&dom, "private");
    assert_eq!((private[7].as_str(), private[8].as_str()), ("3", "3"), "{private:?}");
    let broken = row(&dom, "broken");
    assert_eq!((broken[1].as_str(), broken[3].as_str()), ("backend", "100.0%"), "{broken:?}");
    // The target the failure ejected, and the listener.
    let target = row(&dom, "backend");
    assert_eq!(target[1], format!("http://{dead}"));
    assert!(["unhealthy", "ejected"].contains(&target[2].as_str()), "{target:?}");
    assert_eq!(row(&dom, "public")[1], public.to_string());

    // The page itself: no data without the API, nothing from elsewhere.
    let page = get(&format!("http://{admin}/"), &[]).await;
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.header("content-security-policy").is_some_and(|c| c.contains("connect-src 'self'")));
    assert!(!page.text().contains("http://") && !page.text().contains("https://"), "self-contained: no CDN");
}

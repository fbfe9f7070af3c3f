//! Build metadata: the commit and profile `portcullis version` (and the
//! commit `/status`) report.
//! From `PORTCULLIS_COMMIT` when set (a container build has no `.git`),
//! else from git in a checkout, else `unknown`.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PORTCULLIS_COMMIT");
    // Rerun when HEAD moves: HEAD itself and the branch file it names
    // (only files that exist: a missing one would rerun every build).
    let git = Path::new(".git");
    for file in [git.join("HEAD"), git.join("packed-refs")] {
        if file.is_file() {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
    if let Some(branch) =
        std::fs::read_to_string(git.join("HEAD")).ok().and_then(|h| h.strip_prefix("ref: ").map(|r| git.join(r.trim())))
        && branch.is_file()
    {
        println!("cargo:rerun-if-changed={}", branch.display());
    }
    let commit = std::env::var("PORTCULLIS_COMMIT")
        .ok()
        .filter(|c| !c.is_empty() && c != "unknown")
        .or_else(|| {
            let out = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
            let text = String::from_utf8(out.stdout).ok()?;
            (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PORTCULLIS_COMMIT={commit}");
    // The cargo profile (`dev`, `release`, `dist`…): OUT_DIR is
    // <target>/<profile dir>/build/<crate>/out, where `dev` builds in `debug`.
    let profile = std::env::var("OUT_DIR")
        .ok()
        .and_then(|out| {
            let dir = Path::new(&out).ancestors().nth(3)?.file_name()?.to_str()?.to_string();
            Some(if dir == "debug" { "dev".to_string() } else { dir })
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PORTCULLIS_PROFILE={profile}");
}

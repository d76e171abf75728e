//! Records the commit nook is built from, for `nook version` and `nook --version`:
//! `$NOOK_COMMIT` when the build sets it (a tarball build, a packager), else `git rev-parse`
//! of the checkout, else "unknown" (no git, or not a checkout).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=NOOK_COMMIT");
    let commit = match std::env::var("NOOK_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => {
            // Rebuild when HEAD moves: HEAD itself, the branch it names, and packed refs.
            for file in ["HEAD", "packed-refs"] {
                if let Some(p) = git(&["rev-parse", "--git-path", file]) {
                    watch(&p);
                }
            }
            if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(p) = git(&["rev-parse", "--git-path", &branch]) {
                    watch(&p);
                }
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    println!("cargo:rustc-env=NOOK_COMMIT={commit}");
}

/// Reruns this script when `path` (relative to the crate, as git prints it) changes.
fn watch(path: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if p.exists() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
}

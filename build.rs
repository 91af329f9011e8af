//! Records the commit the binary is built from, for `sluice --version` (`sluice::COMMIT`).
//!
//! `SLUICE_COMMIT` in the build's environment wins (the image build sets it from a build
//! argument: its context has no `.git`); else `git rev-parse --short=12 HEAD` when the
//! package is the top of a git work tree; else `unknown`. Only git and std are used.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SLUICE_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let commit = std::env::var("SLUICE_COMMIT")
        .ok()
        .filter(|c| is_commit_name(c))
        .or_else(git_head)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SLUICE_COMMIT={commit}");
}

/// 1 to 40 characters of `0-9 a-z A-Z . _ -`: a hash or a tag, nothing that could break
/// the version line.
fn is_commit_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn git_head() -> Option<String> {
    // Only this package's own repository: not one that merely contains an unpacked copy.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    let here = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    if Path::new(&top).canonicalize().ok()? != Path::new(&here).canonicalize().ok()? {
        return None;
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| is_commit_name(c))?;
    // Build again when HEAD moves: HEAD itself (checkouts), the branch it names (commits),
    // and packed-refs (where that branch may live). Only files that exist: cargo reruns a
    // script on every build when a watched path is missing.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(&["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    Some(commit)
}

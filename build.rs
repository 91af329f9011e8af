//! Records the commit the binary is built from, for `sluice --version` (`sluice::COMMIT`),
//! and the dependency list (name and version of every crates.io package in `Cargo.lock`)
//! that `sluice scan --advisory-db` checks (`sluice::scan::advisories::DEPENDENCIES`).
//!
//! `SLUICE_COMMIT` in the build's environment wins (the image build sets it from a build
//! argument: its context has no `.git`); else `git rev-parse --short=12 HEAD` when the
//! package is the top of a git work tree; else `unknown`. Only git and std are used.

use std::path::{Path, PathBuf};
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
    write_dependencies();
}

/// Writes `$OUT_DIR/dependencies.rs`: a `&[(&str, &str)]` of the registry packages in
/// `Cargo.lock` (every platform's and the dev-dependencies too: a superset of what is
/// linked). No lock file (a build from a published crate without one) gives an empty list.
fn write_dependencies() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let lock = manifest.join("Cargo.lock");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut out = String::from("&[\n");
    for (name, version) in registry_packages(&text) {
        out.push_str(&format!("    ({name:?}, {version:?}),\n"));
    }
    out.push(']');
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(dest.join("dependencies.rs"), out).expect("OUT_DIR is writable");
}

/// The `(name, version)` of each `[[package]]` with a `registry+` source. The lock file's
/// entries are flat `key = "value"` lines, so no TOML parser is needed (and a build
/// script's dependencies would be built for every build).
fn registry_packages(lock: &str) -> Vec<(String, String)> {
    let mut packages = Vec::new();
    let mut current: Option<(String, String, bool)> = None;
    let mut flush = |current: &mut Option<(String, String, bool)>| {
        if let Some((name, version, true)) = current.take()
            && !name.is_empty()
            && !version.is_empty()
        {
            packages.push((name, version));
        }
    };
    for line in lock.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            flush(&mut current);
            current = Some((String::new(), String::new(), false));
            continue;
        }
        if line.starts_with('[') {
            flush(&mut current);
            continue;
        }
        let Some(entry) = current.as_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        let value = value.trim_matches('"');
        match key {
            "name" => entry.0 = value.to_owned(),
            "version" => entry.1 = value.to_owned(),
            "source" => entry.2 = value.starts_with("registry+"),
            _ => {}
        }
    }
    flush(&mut current);
    packages
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

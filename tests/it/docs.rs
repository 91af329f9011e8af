//! The docs keep up with the code: every error code the server can send is listed in
//! docs/API.md, and nothing in the repository points at documents outside it.
//!
//! Codes are read from the source: the code argument of every `ApiError::new(...)` and every
//! code a `Refusal` maps to (`=> "..."` in `policy/refusal.rs`).

use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read a source file");
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn every_error_code_in_the_source_is_listed_in_api_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let api = std::fs::read_to_string(root.join("docs/API.md")).expect("read docs/API.md");
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let constructed = regex::Regex::new(r#"ApiError::new\(\s*StatusCode::[A-Z_]+,\s*"([a-z_]+)""#)
        .expect("a valid pattern");
    let refused = regex::Regex::new(r#"=> "([a-z_]+)","#).expect("a valid pattern");
    let mut codes = Vec::new();
    for (path, text) in &files {
        if path.ends_with("tests.rs") || path.contains("/tests/") {
            continue;
        }
        codes.extend(
            constructed
                .captures_iter(text)
                .map(|c| (c[1].to_string(), path.clone())),
        );
        if path.ends_with("policy/refusal.rs") {
            codes.extend(
                refused
                    .captures_iter(text)
                    .map(|c| (c[1].to_string(), path.clone())),
            );
        }
    }
    assert!(
        codes.len() > 20,
        "the scan found too few codes ({}); has ApiError::new changed shape?",
        codes.len()
    );
    let missing: Vec<String> = codes
        .iter()
        .filter(|(code, _)| !api.contains(&format!("`{code}`")))
        .map(|(code, path)| format!("{code} ({path})"))
        .collect();
    assert!(
        missing.is_empty(),
        "error codes the server can send but docs/API.md does not list: {missing:?}"
    );
}

/// The project's documents stand alone: users of the product have only the repository.
#[test]
fn nothing_cites_documents_outside_the_repository() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in [
        "src", "tests", "docs", "benches", "deploy", "examples", "scripts",
    ] {
        if root.join(dir).is_dir() {
            all_files(&root.join(dir), &mut files);
        }
    }
    for name in ["README.md", "CHANGELOG.md", "docker.env.example"] {
        files.push(root.join(name));
    }
    // Spelled in two pieces so that this file does not match itself.
    let outside = [format!("DESIGN{}", ".md"), format!("../{}", "shared")];
    let mut cited = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for needle in &outside {
            if text.contains(needle.as_str()) {
                cited.push(format!("{} cites {needle}", file.display()));
            }
        }
    }
    assert!(cited.is_empty(), "{cited:#?}");
}

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a directory") {
        let path = entry.expect("a directory entry").path();
        // Installed packages (the test OpenID provider's) are not the project's documents.
        if path.file_name().is_some_and(|name| name == "node_modules") {
            continue;
        }
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

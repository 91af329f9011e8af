//! The instance's OpenAPI document against the code: every `.route(` in `src/` (outside
//! tests) is read with its path and methods, prefixed where its router is nested, and
//! compared with the paths of `src/openapi/instance.yaml`, both ways.
//!
//! Why a source walk: axum's `Router` cannot list its routes, and a table beside the
//! router would be one more thing to forget. The walk cannot miss a route silently: a
//! `.route(` whose path is not a string literal or a `const` of the same file, a method it
//! does not know, a `.nest(` other than the known one, or a `.route_service(` /
//! `.nest_service(` fails the test with what to teach it. The served test in the parent
//! module then asks a running gateway for every documented path and method, which catches
//! a wrong prefix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Where routers are nested: files under the first prefix serve under the second path.
/// `instance/router.rs` nests the admin router at `/v1/admin`.
const MOUNTS: &[(&str, &str)] = &[("src/admin", "/v1/admin")];
/// The `.nest(` calls the walk knows (file, path); any other fails it.
const KNOWN_NESTS: &[(&str, &str)] = &[("src/instance/router.rs", "/v1/admin")];
/// The method routers axum offers (`any` accepts every method).
const METHODS: &[&str] = &[
    "get", "post", "put", "delete", "patch", "head", "options", "trace", "any",
];

/// A route found in the source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub path: String,
    pub method: String,
    pub file: String,
}

/// What the walk found: the routes, the `.nest(` calls, and what it could not read.
#[derive(Debug, Default)]
pub struct Walk {
    pub routes: Vec<Route>,
    pub nests: Vec<(String, String)>,
    pub unreadable: Vec<String>,
}

/// Walks one file's production code.
pub fn walk_file(file: &str, code: &str, walk: &mut Walk) {
    let chars: Vec<char> = code.chars().collect();
    let text: String = chars.iter().collect();
    let prefix = MOUNTS
        .iter()
        .find(|(under, _)| {
            file.strip_prefix(under)
                .is_some_and(|rest| rest.starts_with('/') || rest == ".rs")
        })
        .map_or("", |(_, mount)| *mount);
    for call in [".route_service(", ".nest_service("] {
        if text.contains(call) {
            walk.unreadable.push(format!(
                "{file}: `{call}` is not read by the route walk (tests/it/openapi/routes.rs): teach it"
            ));
        }
    }
    let mut at = 0;
    while let Some(found) = find_from(&chars, at, &[".route(", ".nest("]) {
        let (start, needle) = found;
        let open = start + needle.len() - 1;
        let Some(close) = matching(&chars, open) else {
            walk.unreadable
                .push(format!("{file}: unbalanced `{needle}`"));
            return;
        };
        let inner: String = chars[open + 1..close].iter().collect();
        let args = split_top_level(&inner);
        let path = args
            .first()
            .and_then(|first| literal_or_const(first.trim(), &text));
        at = close + 1;
        let Some(path) = path else {
            walk.unreadable.push(format!(
                "{file}: `{needle}{}` has a path that is neither a string literal nor a const of this file",
                inner.chars().take(40).collect::<String>()
            ));
            continue;
        };
        if needle == ".nest(" {
            walk.nests.push((file.to_string(), path));
            continue;
        }
        let Some(handler) = args.get(1) else {
            walk.unreadable
                .push(format!("{file}: `.route(\"{path}\"` without a handler"));
            continue;
        };
        match methods_of(handler.trim()) {
            Ok(methods) => {
                for method in methods {
                    walk.routes.push(Route {
                        path: format!("{prefix}{path}"),
                        method,
                        file: file.to_string(),
                    });
                }
            }
            Err(message) => walk
                .unreadable
                .push(format!("{file}: `.route(\"{path}\", ...)`: {message}")),
        }
    }
}

/// The methods of a method-router chain: `post(h).options(g)`, `get(a).post(b)`,
/// `axum::routing::get(h)`.
fn methods_of(chain: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = chain.chars().collect();
    let mut methods = Vec::new();
    let mut at = 0;
    loop {
        let start = at;
        while at < chars.len()
            && (chars[at].is_alphanumeric() || chars[at] == '_' || chars[at] == ':')
        {
            at += 1;
        }
        let name: String = chars[start..at].iter().collect();
        let name = name.rsplit("::").next().unwrap_or("").to_string();
        if !METHODS.contains(&name.as_str()) {
            return Err(format!(
                "`{name}` is not a method router the walk knows ({})",
                METHODS.join(", ")
            ));
        }
        if chars.get(at) != Some(&'(') {
            return Err(format!("`{name}` is not called"));
        }
        let close = matching(&chars, at).ok_or("unbalanced parentheses")?;
        methods.push(name);
        at = close + 1;
        while chars.get(at).is_some_and(|c| c.is_whitespace()) {
            at += 1;
        }
        match chars.get(at) {
            None => return Ok(methods),
            Some('.') => at += 1,
            Some(other) => return Err(format!("unexpected `{other}` in the method chain")),
        }
        while chars.get(at).is_some_and(|c| c.is_whitespace()) {
            at += 1;
        }
    }
}

fn literal_or_const(arg: &str, file_text: &str) -> Option<String> {
    if let Some(literal) = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) {
        return Some(literal.to_string());
    }
    if !arg.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
        return None;
    }
    let declaration = format!("const {arg}: &str = \"");
    let start = file_text.find(&declaration)? + declaration.len();
    let end = file_text[start..].find('"')?;
    Some(file_text[start..start + end].to_string())
}

fn find_from(
    chars: &[char],
    from: usize,
    needles: &[&'static str],
) -> Option<(usize, &'static str)> {
    let text: String = chars[from..].iter().collect();
    needles
        .iter()
        .filter_map(|needle| {
            text.find(needle)
                .map(|byte| (from + text[..byte].chars().count(), *needle))
        })
        .min()
}

/// The index of the `)` closing the `(` at `open`, skipping string literals.
fn matching(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut at = open;
    while at < chars.len() {
        let c = chars[at];
        if in_string {
            if c == '\\' {
                at += 1;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if c == '(' || c == '[' || c == '{' {
            depth += 1;
        } else if c == ')' || c == ']' || c == '}' {
            depth -= 1;
            if depth == 0 {
                return Some(at);
            }
        }
        at += 1;
    }
    None
}

fn split_top_level(inner: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut in_string = false;
    let mut escaped = false;
    let mut current = String::new();
    for c in inner.chars() {
        if in_string {
            current.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    parts
}

/// The paths and methods of an OpenAPI document.
pub fn documented(document: &serde_json::Value) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        let methods = item
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, _)| key.clone())
            .filter(|key| METHODS.contains(&key.as_str()))
            .collect();
        out.insert(path.clone(), methods);
    }
    out
}

/// Everything that disagrees between the walk and the document.
pub fn compare(walk: &Walk, documented: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut problems = walk.unreadable.clone();
    let nests: BTreeSet<(String, String)> = walk.nests.iter().cloned().collect();
    let known: BTreeSet<(String, String)> = KNOWN_NESTS
        .iter()
        .map(|(file, path)| (file.to_string(), path.to_string()))
        .collect();
    for nest in nests.symmetric_difference(&known) {
        problems.push(format!(
            "`.nest(\"{}\")` in {} is not what the route walk knows (MOUNTS and KNOWN_NESTS in tests/it/openapi/routes.rs)",
            nest.1, nest.0
        ));
    }
    let mut served: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for route in &walk.routes {
        served
            .entry(route.path.as_str())
            .or_default()
            .insert(route.method.as_str());
        let in_document = documented.get(&route.path).is_some_and(|methods| {
            route.method == "any" && !methods.is_empty() || methods.contains(&route.method)
        });
        if !in_document {
            problems.push(format!(
                "{} {} (routed in {}) is not in src/openapi/instance.yaml",
                route.method.to_uppercase(),
                route.path,
                route.file
            ));
        }
    }
    for (path, methods) in documented {
        for method in methods {
            let routed = served
                .get(path.as_str())
                .is_some_and(|m| m.contains(method.as_str()) || m.contains("any"));
            if !routed {
                problems.push(format!(
                    "{} {path} is in src/openapi/instance.yaml but no route serves it",
                    method.to_uppercase()
                ));
            }
        }
    }
    problems
}

/// The production code of every file under `src/` (tests cut, comments dropped).
pub fn walk_src() -> Walk {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    collect(&root.join("src"), &mut files);
    files.sort();
    let mut walk = Walk::default();
    for path in files {
        let relative = path
            .strip_prefix(root)
            .expect("under the crate")
            .to_path_buf();
        let name = relative.display().to_string();
        if relative.file_name().is_some_and(|n| n == "tests.rs")
            || relative.iter().any(|p| p == "tests")
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read source");
        walk_file(&name, &production_code(&text), &mut walk);
    }
    walk
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn production_code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(cut) => &text[..cut],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(cut) if !line[..cut].contains('"') => &line[..cut],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn every_route_is_documented_and_every_documented_path_is_routed() {
    let walk = walk_src();
    assert!(
        walk.routes.len() > 40,
        "the walk found only {} routes: it no longer reads the router code",
        walk.routes.len()
    );
    let document = sluice::openapi::instance::value().expect("instance.yaml parses");
    let problems = compare(&walk, &documented(&document));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_route_walk_catches_a_planted_route_and_what_it_cannot_read() {
    let document = serde_json::json!({"paths": {
        "/v1/known": {"get": {}},
        "/v1/admin/users": {"get": {}, "post": {}},
        "/v1/gone": {"delete": {}},
        "/metrics": {"get": {}},
    }});
    let mut walk = Walk::default();
    walk_file(
        "src/gateway.rs",
        "Router::new().route(\"/v1/known\", get(h))\n    .route(\n        \"/v1/planted\",\n        post(x).options(|| async { StatusCode::NO_CONTENT }),\n    )",
        &mut walk,
    );
    walk_file(
        "src/admin/accounts.rs",
        ".route(\"/users\", get(list).post(create))",
        &mut walk,
    );
    walk_file(
        "src/instance/metrics.rs",
        "const PATH: &str = \"/metrics\";\n .route(PATH, any(guarded))",
        &mut walk,
    );
    walk_file(
        "src/instance/router.rs",
        ".nest(\"/v1/admin\", admin)",
        &mut walk,
    );
    let problems = compare(&walk, &documented(&document));
    assert_eq!(
        problems,
        vec![
            "POST /v1/planted (routed in src/gateway.rs) is not in src/openapi/instance.yaml",
            "OPTIONS /v1/planted (routed in src/gateway.rs) is not in src/openapi/instance.yaml",
            "DELETE /v1/gone is in src/openapi/instance.yaml but no route serves it",
        ]
    );

    // What the walk cannot read fails it instead of being skipped.
    let mut walk = Walk::default();
    walk_file("src/x.rs", ".route(path_of(x), get(h))", &mut walk);
    walk_file("src/y.rs", ".route(\"/a\", handler_router())", &mut walk);
    walk_file("src/z.rs", ".nest(\"/v2\", other)", &mut walk);
    walk_file("src/w.rs", ".route_service(\"/s\", svc)", &mut walk);
    let problems = compare(&walk, &BTreeMap::new());
    assert_eq!(problems.len(), 5, "{problems:#?}");
    assert!(
        problems.iter().any(|p| p.contains("`.route_service(`")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("src/x.rs") && p.contains("neither a string literal"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`handler_router` is not a method router"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`.nest(\"/v2\")` in src/z.rs"))
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`.nest(\"/v1/admin\")` in src/instance/router.rs"))
    );
}

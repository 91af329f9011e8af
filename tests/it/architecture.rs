//! The dependency rules of docs/ARCHITECTURE.md, checked on the source: every `crate::` path
//! (and `super::` path, resolved) in `src/` is read, each module is placed in its layer, and
//! an import that points up a layer, a loop between places (the entries of the layer
//! table), or a broken "never"
//! fails this test with the file, the line and the rule.
//!
//! Test-only code (files named `tests.rs` and the `#[cfg(test)] mod tests` block that closes
//! a file) may import anything: tests set up whatever they need.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, top to bottom. A module may import its own layer and the layers below.
const LAYERS: &[&str] = &["wiring", "planes", "services", "compilers", "io", "bottom"];

/// Module path prefix -> layer; the longest matching prefix wins.
const PLACES: &[(&str, &str)] = &[
    ("main", "wiring"),
    ("cli", "wiring"),
    ("instance", "wiring"),
    ("demo", "wiring"),
    ("gateway", "planes"),
    ("admin", "planes"),
    ("auth::routes", "planes"),
    ("auth::pages", "planes"),
    ("console", "planes"),
    ("snapshot", "services"),
    ("rotation", "services"),
    ("acme", "services"),
    ("sso", "services"),
    ("audit", "services"),
    ("auth::service", "services"),
    ("auth::password", "services"),
    ("auth::totp", "services"),
    ("auth::token", "services"),
    ("policy::rate_limit", "services"),
    ("policy::edge", "services"),
    ("limits", "services"),
    ("scim::routes", "planes"),
    ("scim::service", "services"),
    ("scim", "compilers"),
    ("catalog", "compilers"),
    ("policy", "compilers"),
    ("openapi", "compilers"),
    ("scan", "compilers"),
    ("datasource", "io"),
    ("store", "io"),
    ("auth::mail", "io"),
    ("telemetry", "bottom"),
    ("metrics", "bottom"),
    ("spec", "bottom"),
    ("statement", "bottom"),
    ("egress", "bottom"),
    ("vault", "bottom"),
    ("config", "bottom"),
    ("clock", "bottom"),
    ("http", "bottom"),
    ("auth", "bottom"),
    ("lib", "bottom"),
];

/// "Nevers": module prefix -> what it must not import, with the reason.
const NEVERS: &[(&str, &str, &str)] = &[
    ("catalog", "datasource", "the compilers do no IO"),
    ("catalog", "store", "the compilers do no IO"),
    ("catalog", "auth::mail", "the compilers do no IO"),
    ("catalog", "snapshot", "the compilers do no IO"),
    ("policy", "datasource", "policy decisions do no IO"),
    ("policy", "store", "policy decisions do no IO"),
    (
        "openapi",
        "datasource",
        "the OpenAPI documents are built without IO",
    ),
    (
        "openapi",
        "store",
        "the OpenAPI documents are built without IO",
    ),
    (
        "openapi",
        "snapshot",
        "the OpenAPI documents are built without IO",
    ),
    ("http", "gateway", "the http toolkit imports no plane"),
    ("http", "admin", "the http toolkit imports no plane"),
    (
        "http",
        "auth",
        "the http toolkit imports no plane or domain",
    ),
    ("http", "datasource", "the http toolkit imports no domain"),
    (
        "datasource",
        "http",
        "drivers know nothing about the server side of HTTP",
    ),
    ("store", "http", "the store knows nothing about HTTP"),
];

/// Text that opens or resolves an outbound connection; allowed only in the egress guard.
const SOCKET_OPENERS: &[&str] = &[
    "TcpStream::connect",
    "TcpSocket::new",
    "UdpSocket::bind",
    "lookup_host",
    "to_socket_addrs",
];

/// Crates and std modules that do IO, which the pure layers must not name.
const IO_NAMES: &[&str] = &[
    "tokio::net",
    "tokio::fs",
    "std::fs",
    "std::net::TcpStream",
    "reqwest::",
    "rusqlite::",
    "mysql_async::",
    "tokio_postgres::",
    "lettre::",
];
const PURE: &[&str] = &[
    "catalog",
    "spec",
    "statement",
    "policy::access",
    "policy::refusal",
    "openapi",
];

/// One import found in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    file: String,
    line: usize,
    from: String,
    to: String,
}

fn layer_of(module: &str) -> Option<(&'static str, &'static str)> {
    PLACES
        .iter()
        .filter(|(prefix, _)| is_within(module, prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(prefix, layer)| (*prefix, *layer))
}

fn is_within(module: &str, prefix: &str) -> bool {
    module == prefix || module.starts_with(&format!("{prefix}::"))
}

fn rank(layer: &str) -> usize {
    LAYERS
        .iter()
        .position(|l| *l == layer)
        .expect("known layer")
}

/// The module path of a file under `src/`: `src/gateway/invoke.rs` -> `gateway::invoke`.
fn module_of(relative: &Path) -> String {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("::")
}

/// The source without comments and without the closing `#[cfg(test)] mod tests { ... }`.
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

/// Every module path named from `module`'s code, with its line: `crate::a::b`, `use
/// crate::{a, b::c}` trees, `super::x` resolved, and `sluice::` in the binary.
fn imports_of(module: &str, code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &code[i..];
        let root = ["crate::", "sluice::", "super::"]
            .into_iter()
            .find(|r| rest.starts_with(r));
        let boundary = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        if let (Some(root), true) = (root, boundary) {
            let line = code[..i].matches('\n').count() + 1;
            let (tree, used) = read_tree(&rest[root.len()..]);
            let base = match root {
                "super::" => parent(module),
                _ => String::new(),
            };
            for path in tree {
                let path = resolve_supers(&base, &path);
                if !path.is_empty() {
                    found.push((line, path));
                }
            }
            i += root.len() + used.max(1);
        } else {
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    found
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map(|(p, _)| p.to_string())
        .unwrap_or_default()
}

/// `base` + `path`, where `path` may start with more `super::`s.
fn resolve_supers(base: &str, path: &str) -> String {
    let mut base = base.to_string();
    let mut path = path;
    while let Some(rest) = path.strip_prefix("super::") {
        base = parent(&base);
        path = rest;
    }
    match (base.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => base,
        (false, false) => format!("{base}::{path}"),
    }
}

/// Reads a path or a `{...}` use tree after a root; returns the lower-case module paths it
/// names (type names and `self`/`*` are dropped) and how many bytes it used.
fn read_tree(text: &str) -> (Vec<String>, usize) {
    let mut paths = Vec::new();
    let mut prefix: Vec<String> = Vec::new();
    let mut used = 0;
    let mut segment = String::new();
    let chars: Vec<char> = text.chars().collect();
    let mut k = 0;
    if chars.first() == Some(&'{') {
        // A group right after the root: `crate::{a, b::c}`.
        let close = matching_brace(&chars, 0);
        let inner: String = chars[1..close].iter().collect();
        for item in split_top_level(&inner) {
            paths.extend(read_tree(item.trim()).0);
        }
        let used = chars[..=close].iter().map(|c| c.len_utf8()).sum();
        return (keep_modules(paths), used);
    }
    while k < chars.len() {
        let c = chars[k];
        if c.is_ascii_alphanumeric() || c == '_' {
            segment.push(c);
            k += 1;
        } else if c == ':' && chars.get(k + 1) == Some(&':') {
            prefix.push(std::mem::take(&mut segment));
            k += 2;
            if chars.get(k) == Some(&'{') {
                let close = matching_brace(&chars, k);
                let inner: String = chars[k + 1..close].iter().collect();
                for item in split_top_level(&inner) {
                    let (sub, _) = read_tree(item.trim());
                    for s in sub {
                        paths.push(join(&prefix, &s));
                    }
                    if sub_is_self(item.trim()) {
                        paths.push(prefix.join("::"));
                    }
                }
                k = close + 1;
                used = chars[..k].iter().map(|c| c.len_utf8()).sum();
                return (keep_modules(paths), used);
            }
        } else {
            break;
        }
        used = chars[..k].iter().map(|c| c.len_utf8()).sum();
    }
    if !segment.is_empty() {
        prefix.push(segment);
    }
    paths.push(prefix.join("::"));
    (keep_modules(paths), used)
}

fn sub_is_self(item: &str) -> bool {
    item == "self" || item.starts_with("self ")
}

fn join(prefix: &[String], rest: &str) -> String {
    let mut all = prefix.to_vec();
    if !rest.is_empty() {
        all.push(rest.to_string());
    }
    all.join("::")
}

/// Keeps the module part of each path: segments up to the first that is not lower-case
/// (a type, trait or constant) or is `self`.
fn keep_modules(paths: Vec<String>) -> Vec<String> {
    paths
        .into_iter()
        .map(|p| {
            p.split("::")
                .take_while(|s| {
                    !s.is_empty()
                        && *s != "self"
                        && s.chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                })
                .collect::<Vec<_>>()
                .join("::")
        })
        .collect()
}

fn matching_brace(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    for (k, c) in chars.iter().enumerate().skip(open) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    chars.len() - 1
}

fn split_top_level(inner: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (k, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items.into_iter().filter(|s| !s.trim().is_empty()).collect()
}

/// The breaches of the rules among `imports`.
fn breaches(imports: &[Import]) -> Vec<String> {
    let mut found = Vec::new();
    let mut places: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for import in imports {
        let Some((_, from_layer)) = layer_of(&import.from) else {
            found.push(format!(
                "{}: module `{}` has no layer in PLACES",
                import.file, import.from
            ));
            continue;
        };
        let Some((_, to_layer)) = layer_of(&import.to) else {
            continue; // a path into something that is not a module of ours (e.g. a macro)
        };
        let (from_place, to_place) = (place(&import.from), place(&import.to));
        if from_place != to_place {
            places.entry(from_place).or_default().insert(to_place);
        }
        if rank(to_layer) < rank(from_layer) {
            found.push(format!(
                "{}:{}: `{}` ({from_layer}) imports `{}` ({to_layer}): imports point down only",
                import.file, import.line, import.from, import.to
            ));
        }
        for (module, forbidden, why) in NEVERS {
            if is_within(&import.from, module) && is_within(&import.to, forbidden) {
                found.push(format!(
                    "{}:{}: `{}` imports `{}`: {why}",
                    import.file, import.line, import.from, import.to
                ));
            }
        }
    }
    found.extend(loops(&places));
    found
}

/// The entry of [`PLACES`] a module belongs to: the unit that loops are checked between.
fn place(module: &str) -> String {
    layer_of(module).map_or_else(|| module.to_string(), |(prefix, _)| prefix.to_string())
}

/// Loops between places (`a` imports `b` and `b` imports `a`, or longer).
fn loops(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for start in edges.keys() {
        // Depth-first search from `start` for a path back to it.
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    cycle.push(start.clone());
                    // Report each loop once, from its smallest member.
                    if cycle.iter().min() == Some(start) {
                        found.push(format!("import loop: {}", cycle.join(" -> ")));
                    }
                } else if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn is_test_file(relative: &Path) -> bool {
    relative.file_name().is_some_and(|n| n == "tests.rs") || relative.iter().any(|p| p == "tests")
}

struct Scan {
    imports: Vec<Import>,
    texts: Vec<(String, String, String)>,
}

fn scan_src() -> Scan {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    files.sort();
    let mut scan = Scan {
        imports: Vec::new(),
        texts: Vec::new(),
    };
    for path in files {
        let relative = path.strip_prefix(&src).expect("under src").to_path_buf();
        if is_test_file(&relative) {
            continue;
        }
        let module = module_of(&relative);
        let file = format!("src/{}", relative.display());
        let code = production_code(&std::fs::read_to_string(&path).expect("read source"));
        for (line, to) in imports_of(&module, &code) {
            scan.imports.push(Import {
                file: file.clone(),
                line,
                from: module.clone(),
                to,
            });
        }
        scan.texts.push((file, module, code));
    }
    scan
}

#[test]
fn imports_follow_the_layers_and_the_nevers() {
    let scan = scan_src();
    assert!(
        scan.imports.len() > 100,
        "the scan found only {} imports: is the parser broken?",
        scan.imports.len()
    );
    let found = breaches(&scan.imports);
    assert!(
        found.is_empty(),
        "dependency rules broken (docs/ARCHITECTURE.md, \"Dependency rules\"):\n{}",
        found.join("\n")
    );
}

#[test]
fn only_the_egress_guard_opens_outbound_sockets_and_pure_layers_do_no_io() {
    let scan = scan_src();
    let mut found = Vec::new();
    for (file, module, code) in &scan.texts {
        for opener in SOCKET_OPENERS {
            // The listener loop makes its own listening socket (to set the backlog); it
            // binds and listens, and never connects anywhere.
            let listener = module == "http::server"
                && *opener == "TcpSocket::new"
                && code.contains(".listen(")
                && !code.contains(".connect(");
            if code.contains(opener) && module != "egress" && !listener {
                found.push(format!("{file}: `{opener}` outside the egress guard"));
            }
        }
        if PURE.iter().any(|p| is_within(module, p)) {
            for name in IO_NAMES {
                if code.contains(name) {
                    found.push(format!("{file}: `{name}` in a module that must do no IO"));
                }
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// The checker itself: a forbidden import, an upward import, a loop and a socket opener
/// each produce a breach; paths in all their spellings are read.
#[test]
fn the_checker_catches_what_it_should() {
    let import = |from: &str, to: &str| Import {
        file: format!("src/{from}.rs"),
        line: 1,
        from: from.into(),
        to: to.into(),
    };
    assert!(
        breaches(&[
            import("gateway", "auth::service"),
            import("catalog", "spec")
        ])
        .is_empty()
    );
    let up = breaches(&[import("http::body", "gateway")]);
    assert!(
        up.iter().any(|b| b.contains("imports point down only")),
        "{up:?}"
    );
    assert!(up.iter().any(|b| b.contains("imports no plane")), "{up:?}");
    let never = breaches(&[import("catalog::compile", "datasource::http")]);
    assert!(never.iter().any(|b| b.contains("do no IO")), "{never:?}");
    let cycle = breaches(&[import("gateway", "admin"), import("admin", "gateway")]);
    assert!(cycle.iter().any(|b| b.contains("import loop")), "{cycle:?}");

    let code = "use crate::{a::b::{C, d::E}, f};\nuse super::g::H;\nfn x() { crate::i::j::k(); }\nuse sluice::cli::run;";
    let mut read: Vec<String> = imports_of("m::n", code)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    read.sort();
    assert_eq!(
        read,
        ["a::b", "a::b::d", "cli::run", "f", "i::j::k", "m::g"]
    );
    assert_eq!(
        production_code("use crate::a; // crate::b\n#[cfg(test)]\nmod tests {\nuse crate::c;\n}"),
        "use crate::a; "
    );
}

//! The fuzz targets' checks (fuzz/src/lib.rs) compiled with the tests and run on the
//! committed seeds (fuzz/seeds/TARGET/*). The fuzz crate is its own workspace, built only by
//! `scripts/fuzz`; compiling its checks here keeps them in step with the library (a field
//! added to a type they build fails this build, not the next fuzz run), and the seeds become
//! regression inputs of every test run. A failed check panics, as it would under libFuzzer.

use std::path::Path;

#[allow(dead_code)]
#[path = "../../fuzz/src/lib.rs"]
mod checks;

/// Every seed of `target`, each given to `check`; there must be at least one.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&bytes));
        assert!(
            outcome.is_ok(),
            "{target}: seed {} fails its check",
            path.display()
        );
        seeds += 1;
    }
    assert!(seeds > 0, "no seeds in {}", dir.display());
}

#[test]
fn sql_template_seeds_pass_their_check() {
    replay("sql_template", checks::sql_template);
}

#[test]
fn http_template_seeds_pass_their_check() {
    replay("http_template", checks::http_template);
}

#[test]
fn param_validate_seeds_pass_their_check() {
    replay("param_validate", checks::param_validate);
}

#[test]
fn catalog_yaml_seeds_pass_their_check() {
    replay("catalog_yaml", checks::catalog_yaml);
}

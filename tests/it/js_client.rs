//! The JavaScript client (`clients/js`): the committed build is what `tsc` makes of the
//! source; `sluice-types` turns the demo app's OpenAPI document into types under which a
//! correct consumer compiles and a wrong param type does not; the built client runs the
//! demo's queries in Node (whole, streamed, an error naming its param, the 429 retry).
//!
//! Needs node and the pinned `typescript` (scripts/test runs `npm ci --prefix clients/js`);
//! fails when they are missing.

use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn client_dir() -> PathBuf {
    root().join("clients/js")
}

fn tsc() -> PathBuf {
    let tsc = client_dir().join("node_modules/typescript/bin/tsc");
    assert!(
        tsc.exists(),
        "typescript is missing: scripts/test installs it (npm ci --prefix clients/js)"
    );
    tsc
}

async fn node(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new("node");
    command.args(args);
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().await.expect("node runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A `sluice demo` instance serving on 127.0.0.1; its base URL.
async fn demo() -> (String, tokio::sync::oneshot::Sender<()>, tempfile::TempDir) {
    let demo = sluice::demo::prepare("127.0.0.1:0".parse().unwrap())
        .await
        .expect("demo");
    let listener = demo.instance.bind().await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(demo.instance.serve(listener, async move {
        let _ = stopped.await;
    }));
    (format!("http://{address}"), stop, demo.directory)
}

#[tokio::test]
async fn the_committed_build_is_the_sources_build() {
    let out = tempfile::tempdir().unwrap();
    let output = node(
        &[
            tsc().as_os_str(),
            "-p".as_ref(),
            client_dir().join("tsconfig.json").as_os_str(),
            "--outDir".as_ref(),
            out.path().as_os_str(),
        ],
        &[],
    )
    .await;
    assert!(output.status.success(), "tsc: {}", text(&output));
    for file in ["index.js", "index.d.ts"] {
        let built = std::fs::read_to_string(out.path().join(file)).unwrap();
        let committed = std::fs::read_to_string(client_dir().join("dist").join(file)).unwrap();
        assert!(
            built == committed,
            "clients/js/dist/{file} is stale: run `npm run build --prefix clients/js`"
        );
    }
    // The demo page serves exactly that build.
    let committed = std::fs::read_to_string(client_dir().join("dist/index.js")).unwrap();
    assert_eq!(sluice::demo::page::CLIENT, committed);
}

#[tokio::test]
async fn generated_types_accept_right_params_and_refuse_a_wrong_type() {
    let tsc = tsc();
    let (base, _stop, _directory) = demo().await;
    let work = tempfile::tempdir().unwrap();
    // The generator fetches the app's document from the running instance.
    let output = node(
        &[
            client_dir().join("bin/sluice-types.mjs").as_os_str(),
            base.as_ref(),
            "demo".as_ref(),
        ],
        &[],
    )
    .await;
    assert!(output.status.success(), "sluice-types: {}", text(&output));
    let types = String::from_utf8(output.stdout).unwrap();
    assert!(types.contains("\"get_customer\": {"), "{types}");
    std::fs::write(work.path().join("demo-types.ts"), &types).unwrap();
    std::fs::copy(
        client_dir().join("src/index.ts"),
        work.path().join("index.ts"),
    )
    .unwrap();
    for file in ["consumer.ts", "consumer-wrong.ts"] {
        std::fs::copy(client_dir().join("test").join(file), work.path().join(file)).unwrap();
    }
    let compile = |file: &str| {
        let path = work.path().join(file);
        let tsc = tsc.clone();
        async move {
            node(
                &[
                    tsc.as_os_str(),
                    "--noEmit".as_ref(),
                    "--strict".as_ref(),
                    "--target".as_ref(),
                    "ES2020".as_ref(),
                    "--lib".as_ref(),
                    "ES2020,DOM,DOM.Iterable".as_ref(),
                    "--module".as_ref(),
                    "ES2020".as_ref(),
                    "--moduleResolution".as_ref(),
                    "bundler".as_ref(),
                    path.as_os_str(),
                ],
                &[],
            )
            .await
        }
    };
    let good = compile("consumer.ts").await;
    assert!(
        good.status.success(),
        "the typed consumer compiles: {}\n{types}",
        text(&good)
    );
    let wrong = compile("consumer-wrong.ts").await;
    assert!(
        !wrong.status.success(),
        "a wrong param type must not compile"
    );
    let errors = text(&wrong);
    assert!(
        errors.contains("consumer-wrong.ts(8,")
            && errors.contains("Type 'string' is not assignable to type 'number'"),
        "the error is the param's type: {errors}"
    );
}

#[tokio::test]
async fn the_built_client_runs_the_demo_queries_in_node() {
    let (base, _stop, _directory) = demo().await;
    let output = node(
        &[client_dir().join("test/node.mjs").as_os_str()],
        &[("DEMO", &base)],
    )
    .await;
    assert!(
        output.status.success() && text(&output).contains("ok: node client"),
        "{}",
        text(&output)
    );
}

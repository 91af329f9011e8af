//! `sluice serve`, `sluice init` and `sluice demo`: run the gateway from the environment,
//! create its store, or run a throw-away demo instance on SQLite sample data.

use std::net::SocketAddr;

use anyhow::Context;
use sluice::config::{Environment, LogFormat};
use sluice::instance::{self, Instance, StoreOpening};
use sluice::{demo, telemetry};

pub async fn serve(env: &Environment) -> anyhow::Result<()> {
    let config = env.config()?;
    config.validate()?;
    telemetry::init(config.log_format, &config.log_level, std::io::stderr);
    for variable in env.unknown_variables() {
        tracing::warn!(%variable, "Not a Sluice variable, ignored (see docker.env.example)");
    }
    let instance = Instance::open(config).await?;
    let listener = instance.bind().await?;
    let metrics = instance.bind_metrics().await?;
    instance
        .serve_with_metrics(
            listener,
            metrics,
            sluice::http::server::termination_signal(),
        )
        .await;
    Ok(())
}

/// `sluice init`: creates the store where the configuration points, or says it is there.
pub fn init(env: &Environment) -> anyhow::Result<()> {
    let config = env.config()?;
    config.validate()?;
    if config.metadata_url.is_some() {
        let name = instance::store_name(&config);
        let store = instance::open_store(&config, StoreOpening::CreateIfMissing)
            .with_context(|| format!("opening {name}"))?;
        let revision = store.catalog_revision()?;
        println!("{name}: the metadata store's schema is current (catalog revision {revision})");
        return Ok(());
    }
    let path = config.metadata_path();
    let existed = path.is_file();
    let store = instance::open_store(&config, StoreOpening::CreateIfMissing)
        .with_context(|| format!("creating {}", path.display()))?;
    let revision = store.catalog_revision()?;
    if existed {
        println!(
            "{}: the metadata store exists (catalog revision {revision})",
            path.display()
        );
    } else {
        println!("{}: created an empty metadata store", path.display());
    }
    Ok(())
}

pub async fn run_demo(listen: SocketAddr) -> anyhow::Result<()> {
    telemetry::init(LogFormat::Text, "info", std::io::stderr);
    let demo = demo::prepare(listen).await?;
    let listener = demo.instance.bind().await?;
    let address = listener.local_addr()?;
    println!("{}", demo::banner(address));
    demo.instance
        .serve(listener, sluice::http::server::termination_signal())
        .await;
    drop(demo.directory);
    Ok(())
}

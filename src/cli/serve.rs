//! `sluice serve` and `sluice demo`: run the gateway from the environment, or a throw-away
//! demo instance on SQLite sample data.

use std::net::SocketAddr;

use sluice::config::{Environment, LogFormat};
use sluice::instance::Instance;
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

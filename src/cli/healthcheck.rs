//! `sluice healthcheck`: asks this instance's own listener for `/healthz`, so a container
//! image without curl or a shell can still have a `HEALTHCHECK`. Exits 0 when the answer is
//! 200 and 1 otherwise, with the reason on one line.
//!
//! The default URL is plain HTTP to the address `SLUICE_LISTEN` names, with an unspecified
//! address (`0.0.0.0`, `[::]`) replaced by loopback of the same family. This is the one
//! client connection the binary makes outside the egress guard: it goes to Sluice itself,
//! never to a datasource, and carries no credential.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use sluice::config::{Config, Environment};

pub async fn healthcheck(
    env: &Environment,
    url: Option<String>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let url = match url {
        Some(url) => url,
        None => default_url(&env.config()?)?,
    };
    let client = reqwest::Client::builder()
        // A proxy set for the container's outbound traffic must not catch the loopback call.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .context("building the HTTP client")?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        bail!("GET {url} answered {status}");
    }
    Ok(())
}

/// `http://<listen address>/healthz`, with an unspecified address replaced by loopback.
fn default_url(config: &Config) -> anyhow::Result<String> {
    if config.serves_tls() {
        bail!(
            "SLUICE_TLS_CERT_FILE or SLUICE_ACME_DOMAINS is set, so the listener speaks HTTPS: pass \
             --url https://<a name in the certificate>:{}/healthz",
            config.listen.port()
        );
    }
    Ok(format!(
        "http://{}/healthz",
        loopback_if_unspecified(config.listen)
    ))
}

fn loopback_if_unspecified(address: SocketAddr) -> SocketAddr {
    let ip = match address.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, address.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_become_loopback() {
        for (listen, expected) in [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:9000", "[::1]:9000"),
            ("10.1.2.3:80", "10.1.2.3:80"),
            ("[fe80::1]:80", "[fe80::1]:80"),
        ] {
            let address = loopback_if_unspecified(listen.parse().unwrap());
            assert_eq!(address.to_string(), expected, "{listen}");
        }
    }
}

//! `sluice egress`: the addresses to hand a DBA (source addresses, public egress IPs, each
//! datasource's destination), as text or JSON.

use sluice::config::Environment;

pub fn egress(env: &Environment, json: bool) -> anyhow::Result<()> {
    let config = env.config()?;
    let store = super::open_store(&config)?;
    let report = sluice::admin::egress_report(&config, &store.load_catalog()?);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let list = |items: Vec<String>, empty: &str| {
        if items.is_empty() {
            empty.to_string()
        } else {
            items.join(", ")
        }
    };
    println!(
        "Source addresses (SLUICE_EGRESS_BIND): {}",
        list(
            report
                .bind_addresses
                .iter()
                .map(|a| a.to_string())
                .collect(),
            "not set: the operating system picks per route"
        )
    );
    println!(
        "Public egress IPs (SLUICE_EGRESS_PUBLIC_IPS): {}",
        list(
            report.public_ips.iter().map(|a| a.to_string()).collect(),
            "not set"
        )
    );
    println!(
        "Instance egress allow list (SLUICE_EGRESS_ALLOW): {}",
        list(
            report.instance_allow.clone(),
            "none (public addresses only)"
        )
    );
    for datasource in &report.datasources {
        println!(
            "Datasource {} ({}): {}{}",
            datasource.name,
            datasource.kind,
            if datasource.destination.is_empty() {
                "local file"
            } else {
                &datasource.destination
            },
            if datasource.egress_allow.is_empty() {
                String::new()
            } else {
                format!(" (egress_allow: {})", datasource.egress_allow.join(", "))
            }
        );
    }
    Ok(())
}

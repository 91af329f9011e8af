use std::time::Duration;

use super::*;

fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .collect()
}

#[test]
fn a_fresh_instance_shows_its_build_and_the_families_without_labels() {
    let text = Metrics::new().render(&Reading::default());
    for family in [
        "sluice_account_lockouts_total",
        "sluice_catalog_revision",
        "sluice_build_info",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    let build = lines_with(&text, "sluice_build_info{");
    assert_eq!(build.len(), 1, "{text}");
    assert!(
        build[0].contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")))
            && build[0].contains(&format!("commit=\"{}\"", crate::COMMIT))
            && build[0].ends_with(" 1"),
        "{}",
        build[0]
    );
    // A family with labels appears with its first series: nothing has happened yet.
    assert!(!text.contains("sluice_query_requests_total"), "{text}");
}

#[test]
fn a_query_series_counts_by_status_and_makes_each_series_once() {
    let metrics = Metrics::new();
    let orders = metrics.query_series("shop", "orders");
    orders.observe(200, Duration::from_micros(700));
    orders.observe(200, Duration::from_millis(30));
    orders.observe(503, Duration::from_millis(2));
    orders.observe(418, Duration::from_millis(2));
    metrics
        .unknown_query()
        .observe(404, Duration::from_micros(50));
    // A second series for the same query (a reload) adds to the same counts.
    metrics
        .query_series("shop", "orders")
        .observe(200, Duration::from_millis(1));
    let text = metrics.render(&Reading::default());
    let count = |labels: &str| {
        let prefix = format!("sluice_query_requests_total{{{labels}}} ");
        lines_with(&text, &prefix)
            .first()
            .map(|line| line[prefix.len()..].to_string())
    };
    assert_eq!(
        count("app=\"shop\",query=\"orders\",status=\"200\"").as_deref(),
        Some("3")
    );
    assert_eq!(
        count("app=\"shop\",query=\"orders\",status=\"503\"").as_deref(),
        Some("1")
    );
    assert_eq!(
        count("app=\"shop\",query=\"orders\",status=\"other\"").as_deref(),
        Some("1")
    );
    assert_eq!(
        count("app=\"(unknown)\",query=\"(unknown)\",status=\"404\"").as_deref(),
        Some("1")
    );
    // The histogram: 0.7 ms is within 1 ms, 30 ms only from the 50 ms bucket on.
    let bucket = |le: &str| {
        let prefix = format!(
            "sluice_query_duration_seconds_bucket{{app=\"shop\",query=\"orders\",status=\"200\",le=\"{le}\"}} "
        );
        lines_with(&text, &prefix)
            .first()
            .map(|line| line[prefix.len()..].to_string())
    };
    assert_eq!(bucket("0.0005").as_deref(), Some("0"), "{text}");
    assert_eq!(bucket("0.001").as_deref(), Some("2"), "{text}");
    assert_eq!(bucket("0.025").as_deref(), Some("2"), "{text}");
    assert_eq!(bucket("0.05").as_deref(), Some("3"), "{text}");
    assert_eq!(bucket("+Inf").as_deref(), Some("3"), "{text}");
}

#[test]
fn every_status_has_its_own_slot_and_the_rest_share_other() {
    for (slot, label) in STATUSES.iter().enumerate() {
        if let Ok(status) = label.parse::<u16>() {
            assert_eq!(status_slot(status), slot, "{status}");
        }
    }
    for status in [100, 201, 204, 302, 418, 422, 501, 599] {
        assert_eq!(STATUSES[status_slot(status)], "other", "{status}");
    }
}

#[test]
fn pool_gauges_show_the_pools_being_served_only() {
    let metrics = Metrics::new();
    let reading = |pools: Vec<PoolReading<'static>>| Reading {
        catalog_revision: 7,
        pools,
    };
    let text = metrics.render(&reading(vec![
        PoolReading {
            datasource: "main",
            size: 4,
            in_use: 3,
            waiting: 2,
        },
        PoolReading {
            datasource: "old",
            size: 1,
            in_use: 0,
            waiting: 0,
        },
    ]));
    assert!(text.contains("sluice_datasource_pool_size{datasource=\"main\"} 4\n"));
    assert!(text.contains("sluice_datasource_pool_in_use{datasource=\"main\"} 3\n"));
    assert!(text.contains("sluice_datasource_pool_waiting{datasource=\"main\"} 2\n"));
    assert!(text.contains("sluice_datasource_pool_size{datasource=\"old\"} 1\n"));
    assert!(text.contains("sluice_catalog_revision 7\n"), "{text}");
    // A reload removed `old`.
    let text = metrics.render(&reading(vec![PoolReading {
        datasource: "main",
        size: 4,
        in_use: 0,
        waiting: 0,
    }]));
    assert!(!text.contains("\"old\""), "{text}");
    assert!(text.contains("sluice_datasource_pool_in_use{datasource=\"main\"} 0\n"));
}

#[test]
fn refusals_and_failures_are_counted_by_their_fixed_labels() {
    let metrics = Metrics::new();
    metrics.connect_failed("main", "connect");
    metrics.connect_failed("main", "connect");
    metrics.connect_failed("main", "auth");
    metrics.egress_refused("api");
    metrics.rate_limited("address");
    metrics.rate_limited("query_user");
    metrics.sign_in_failed("wrong_password");
    metrics.sign_in_failed("wrong_password");
    metrics.account_locked();
    let text = metrics.render(&Reading::default());
    for line in [
        "sluice_datasource_connect_failures_total{datasource=\"main\",class=\"connect\"} 2",
        "sluice_datasource_connect_failures_total{datasource=\"main\",class=\"auth\"} 1",
        "sluice_egress_refusals_total{datasource=\"api\"} 1",
        "sluice_rate_limit_refusals_total{limit=\"address\"} 1",
        "sluice_rate_limit_refusals_total{limit=\"query_user\"} 1",
        "sluice_sign_in_failures_total{reason=\"wrong_password\"} 2",
        "sluice_account_lockouts_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}

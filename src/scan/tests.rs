//! Each rule triggered by a catalog or setting made for it, and not by its safe twin.

use super::*;
use crate::spec::yaml;

fn facts() -> InstanceFacts {
    InstanceFacts {
        public_url: Some("https://sluice.example".into()),
        per_ip_limit: true,
        lockout_threshold: 5,
        ..InstanceFacts::default()
    }
}

fn rules_of(catalog: &str, facts: &InstanceFacts) -> Vec<(String, String)> {
    let spec = yaml::parse(catalog).unwrap_or_else(|e| panic!("{e}"));
    scan(&spec, facts)
        .into_iter()
        .map(|f| (f.rule.to_owned(), f.location))
        .collect()
}

const DATASOURCES: &str = "
datasources:
  pg: { kind: postgres, host: 127.0.0.1, database: test, user: postgres }
  remote: { kind: postgres, host: db.example.com, database: shop, user: app, tls: verify-full }
";

fn catalog(apps: &str) -> String {
    format!("{DATASOURCES}apps:\n{apps}")
}

#[test]
fn a_careful_catalog_and_instance_have_no_findings() {
    let found = rules_of(
        &catalog(
            "  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      products:
        datasource: pg
        sql: SELECT id, name FROM products WHERE id = {{ params.id }} AND owner = {{ user.id }} LIMIT 10
        params: { id: { type: int, min: 1, max: 1000000 } }
  team:
    visibility: workspace
    grants: { roles: [viewer] }
    queries:
      mine:
        datasource: remote
        max_rows: 100
        sql: SELECT id FROM orders WHERE owner = {{ user.id }}
",
        ),
        &facts(),
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn each_rule_fires_where_it_should() {
    let found = rules_of(
        &catalog(
            "  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      everything:
        datasource: pg
        sql: SELECT * FROM products
        params: { n: { type: int } }
      signup:
        datasource: pg
        sql: INSERT INTO leads (email) VALUES ({{ params.email }}) RETURNING id
        params: { email: { type: text } }
      keyed:
        datasource: pg
        max_rows: 5
        description: 'uses AKIAZ7QX4PL2M9RT8WQE'
        sql: SELECT id FROM t WHERE owner = {{ user.id }}
  team:
    visibility: workspace
    grants: { roles: [admin, developer, viewer] }
    queries:
      q:
        datasource: pg
        max_rows: 1
        sql: SELECT 1
",
        ),
        &InstanceFacts {
            public_url: Some("http://sluice.example".into()),
            signup_enabled: true,
            per_ip_limit: false,
            lockout_threshold: 0,
            admin_token: true,
            admins_without_mfa: vec!["root@example.com".into()],
            egress_allow: vec!["10.0.0.0/8".parse().unwrap()],
            ..InstanceFacts::default()
        },
    );
    let expect = [
        ("SLU-D001", "apps.shop.queries.everything"),
        ("SLU-D002", "apps.shop.queries.signup"),
        ("SLU-D003", "apps.shop.queries.everything"),
        ("SLU-D004", "apps.shop.queries.everything"),
        ("SLU-D005", "apps.shop.queries.everything.params.n"),
        ("SLU-C001", "apps.shop.queries.keyed.description"),
        ("SLU-L002", "apps.team.grants"),
        ("SLU-S001", "settings.SLUICE_PUBLIC_URL"),
        ("SLU-S002", "users.root@example.com"),
        ("SLU-S003", "settings.SLUICE_SIGNUP_ALLOWED_DOMAINS"),
        ("SLU-S004", "settings.SLUICE_RATE_LIMIT_PER_IP"),
        ("SLU-S005", "settings.SLUICE_LOCKOUT_THRESHOLD"),
        ("SLU-S007", "settings.SLUICE_EGRESS_ALLOW"),
        ("SLU-S008", "settings.SLUICE_ADMIN_ALLOWED_IPS"),
    ];
    for (rule, at) in expect {
        assert!(
            found.iter().any(|(r, l)| r == rule && l == at),
            "{rule} at {at} missing: {found:?}"
        );
    }
    // The write is reported as a write, not also as an unguarded read.
    assert!(
        !found
            .iter()
            .any(|(r, l)| r == "SLU-D001" && l == "apps.shop.queries.signup")
    );
}

#[test]
fn unverified_tls_off_loopback_and_wide_egress_are_found_on_datasources() {
    let spec = yaml::parse(
        "datasources:
  far: { kind: postgres, host: db.example.com, database: d, user: u, tls: require, egress_allow: [10.0.0.0/8] }
  near: { kind: postgres, host: 127.0.0.1, database: d, user: u, tls: disable }
  api: { kind: http, base_url: 'https://x:hunter2hunter2@api.example.com/v1', headers: { X-Key: 'ghp_8fK2Lm9QxR4tV7wZ1bN3cD5eG6hJ0kPq2sT4' } }
",
    )
    .unwrap();
    let found: Vec<(&str, String)> = scan(&spec, &facts())
        .into_iter()
        .map(|f| (f.rule, f.location))
        .collect();
    assert!(
        found.contains(&("SLU-S006", "datasources.far.tls".into())),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|(_, l)| l.starts_with("datasources.near")),
        "{found:?}"
    );
    assert!(
        found.contains(&("SLU-S007", "datasources.far.egress_allow".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&("SLU-C001", "datasources.api.base_url".into())),
        "{found:?}"
    );
    assert!(
        found.contains(&("SLU-C001", "datasources.api.headers.X-Key".into())),
        "{found:?}"
    );
}

#[test]
fn findings_never_carry_the_secret_and_reports_render() {
    let spec = yaml::parse(&catalog(
        "  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      q:
        datasource: pg
        description: 'key sk_live_51Hx7KqLm9Qr4Tv8Wz1Bn3Cd5'
        sql: SELECT 1 LIMIT 1
",
    ))
    .unwrap();
    let findings = scan(&spec, &facts());
    let shown = format!(
        "{}{}{}",
        report::text(&findings),
        report::json(&findings),
        report::sarif(&findings, None)
    );
    assert!(shown.contains("SLU-C001"), "{shown}");
    assert!(
        !shown.contains("sk_live_51Hx7KqLm9Qr4Tv8Wz1Bn3Cd5"),
        "{shown}"
    );
    let sarif = report::sarif(&findings, None);
    assert_eq!(sarif["version"], "2.1.0");
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], findings[0].rule);
}

#[test]
fn findings_are_located_in_the_exported_yaml() {
    let spec = yaml::parse(&catalog(
        "  shop:
    visibility: public
    grants: { anonymous: true }
    queries:
      first: { datasource: pg, sql: SELECT id FROM t LIMIT 5 }
      writes: { datasource: pg, sql: 'DELETE FROM t' }
",
    ))
    .unwrap();
    let mut findings = scan(&spec, &facts());
    let text = yaml::to_string(&spec);
    locate(&mut findings, &text);
    let write = findings.iter().find(|f| f.rule == "SLU-D002").unwrap();
    let line = write.line.expect("a line");
    let written = text.lines().nth(line - 1).unwrap();
    assert_eq!(written.trim(), "writes:", "{text}");
    assert!(report::text(&findings).contains(&format!("(line {line})")));
    let sarif = report::sarif(&findings, Some("catalog.yaml"));
    let located = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "SLU-D002")
        .unwrap()["locations"][0]["physicalLocation"]
        .clone();
    assert_eq!(located["region"]["startLine"], line);
    assert_eq!(located["artifactLocation"]["uri"], "catalog.yaml");
}

#[test]
fn publishing_is_judged_on_the_apps_own_findings() {
    let before = yaml::parse(&catalog(
        "  shop:
    queries:
      wipe: { datasource: pg, sql: 'DELETE FROM t' }
  blog:
    visibility: public
    grants: { anonymous: true }
    queries:
      posts: { datasource: pg, sql: 'DELETE FROM posts' }
",
    ))
    .unwrap();
    let mut after = before.clone();
    let shop = after.apps.get_mut("shop").unwrap();
    shop.visibility = Visibility::Public;
    shop.grants = Some(GrantSpec {
        anonymous: true,
        ..GrantSpec::default()
    });
    // The blog was public already; the shop becomes public.
    assert_eq!(newly_public(&before, &after), vec!["shop".to_string()]);
    assert_eq!(newly_public(&after, &after), Vec::<String>::new());
    let found = app_findings(&after, "shop");
    assert!(
        found
            .iter()
            .any(|f| f.rule == "SLU-D002" && f.severity == Severity::Critical),
        "{found:?}"
    );
    assert!(found.iter().all(|f| f.location.starts_with("apps.shop.")));
    // An app named as a prefix of another is not mixed in.
    assert!(app_findings(&after, "sho").is_empty());
}

#[test]
fn api_keys_without_expiry_or_for_every_app_are_login_gaps() {
    let two_apps = catalog(
        "  shop:\n    visibility: workspace\n    queries: {}\n  crm:\n    visibility: workspace\n    queries: {}\n",
    );
    let key = |id: &str, expires_at: Option<i64>, apps: &[&str]| ApiKeyFact {
        id: id.into(),
        owner: "dev@example.com".into(),
        expires_at,
        apps: apps.iter().map(|a| a.to_string()).collect(),
    };
    let facts = facts().with_api_keys(vec![
        key("forever", None, &["shop"]),
        key("everything", Some(1), &["crm", "shop"]),
        key("fine", Some(1), &["shop"]),
    ]);
    let found = rules_of(&two_apps, &facts);
    let keys: Vec<_> = found
        .iter()
        .filter(|(_, at)| at.starts_with("api_keys."))
        .cloned()
        .collect();
    assert_eq!(
        keys,
        [
            ("SLU-L004".to_string(), "api_keys.everything".to_string()),
            ("SLU-L003".to_string(), "api_keys.forever".to_string()),
        ]
    );
    // A one-app catalog: a key for that app is not "every app".
    let one_app = catalog("  shop:\n    visibility: workspace\n    queries: {}\n");
    let facts = facts_with(vec![key("k", Some(1), &["shop"])]);
    assert!(
        rules_of(&one_app, &facts)
            .iter()
            .all(|(r, _)| r != "SLU-L004")
    );
}

fn facts_with(keys: Vec<ApiKeyFact>) -> InstanceFacts {
    facts().with_api_keys(keys)
}

use super::*;
use crate::auth::{CallerVia, Identity};
use crate::spec::yaml;

fn caller(role: Role, groups: &[&str]) -> Caller {
    Caller {
        user: Identity {
            id: "u1".into(),
            email: "u1@example.com".into(),
            role,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            mfa_enabled: true,
            claims: Default::default(),
        },
        via: CallerVia::Session {
            token_hash: String::new(),
            public_id: String::new(),
            created_at: 0,
            authenticated_at: 0,
        },
    }
}

fn app(yaml_text: &str) -> AppSpec {
    let catalog = format!(
        "datasources:\n  db:\n    kind: sqlite\n    path: x.db\napps:\n  shop:\n{}",
        yaml_text
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    );
    yaml::parse(&catalog).unwrap().apps.remove("shop").unwrap()
}

#[test]
fn grants_deny_by_default_and_follow_roles_groups_and_anonymous() {
    let spec = app("visibility: public\nqueries:\n  q: { datasource: db, sql: SELECT 1 }\n");
    let query = &spec.queries["q"];
    let policy = compile_query("shop", "q", &spec, query, LimitDefaults::default()).unwrap();
    assert!(policy.grant.is_empty());
    assert!(!policy.grant.allows(None));
    assert!(!policy.grant.allows(Some(&caller(Role::Admin, &[]))));

    let spec = app(
        "visibility: workspace\ngrants: { roles: [developer], groups: [sales] }\nqueries:\n  q: { datasource: db, sql: SELECT 1 }\n  own:\n    datasource: db\n    sql: SELECT 2\n    grants: { roles: [admin] }\n",
    );
    let inherited = compile_query(
        "shop",
        "q",
        &spec,
        &spec.queries["q"],
        LimitDefaults::default(),
    )
    .unwrap();
    let own = compile_query(
        "shop",
        "own",
        &spec,
        &spec.queries["own"],
        LimitDefaults::default(),
    )
    .unwrap();
    let cases = [
        (None, false, false),
        (Some(caller(Role::Viewer, &[])), false, false),
        (Some(caller(Role::Viewer, &["sales"])), true, false),
        (Some(caller(Role::Developer, &[])), true, false),
        (Some(caller(Role::Admin, &[])), false, true),
    ];
    for (who, inherited_ok, own_ok) in cases {
        assert_eq!(
            inherited.grant.allows(who.as_ref()),
            inherited_ok,
            "{who:?}"
        );
        assert_eq!(own.grant.allows(who.as_ref()), own_ok, "{who:?}");
    }

    let public = app(
        "visibility: public\ngrants: { anonymous: true }\nqueries:\n  q: { datasource: db, sql: SELECT 1 }\n",
    );
    let open = compile_query(
        "shop",
        "q",
        &public,
        &public.queries["q"],
        LimitDefaults::default(),
    )
    .unwrap();
    assert!(open.grant.allows(None));
    assert!(open.grant.allows(Some(&caller(Role::Viewer, &[]))));
}

#[test]
fn policy_problems_are_named() {
    let cases = [
        (
            "visibility: workspace\ngrants: { anonymous: true }\n",
            "grants",
        ),
        ("grants: { roles: [root] }\n", "grants"),
        ("allowed_ips: [not-a-network]\n", "allowed_ips"),
        ("visibility: workspace\ncors: { origins: ['*'] }\n", "cors"),
        ("cors: { origins: ['https://a.example/path'] }\n", "cors"),
        ("headers: { referrer_policy: unsafe-url }\n", "headers"),
        ("limits: { per_user: 10/fortnight }\n", "limits.per_user"),
    ];
    for (text, field) in cases {
        let spec = app(&format!("{text}queries: {{}}\n"));
        let problems = compile_app(&spec).unwrap_err();
        assert!(
            problems.iter().any(|(f, _)| f == field),
            "{text}: {problems:?}"
        );
    }
}

#[test]
fn limits_come_from_the_query_then_the_app_then_the_instance() {
    let defaults = LimitDefaults {
        per_user: Some(RateRule::per_minute(600)),
        per_key: None,
        max_concurrency: 0,
    };
    let spec = app(
        "visibility: public\nlimits: { per_user: 60/minute, per_ip: 100/minute, max_concurrency: 8 }\nqueries:\n  a: { datasource: db, sql: SELECT 1 }\n  b:\n    datasource: db\n    sql: SELECT 1\n    limits: { per_user: 5/second, per_key: 'off', max_concurrency: 2 }\n",
    );
    let a = compile_query("shop", "a", &spec, &spec.queries["a"], defaults)
        .unwrap()
        .limits;
    assert_eq!(a.per_user.as_ref().unwrap().rule, RateRule::per_minute(60));
    assert_eq!(a.per_user.as_ref().unwrap().set_at, "app");
    assert_eq!(
        a.per_ip.as_ref().unwrap().key("ip", "1.2.3.4"),
        "ip:shop:1.2.3.4"
    );
    assert!(a.per_key.is_none());
    assert_eq!(a.max_concurrency, 8);
    let b = compile_query("shop", "b", &spec, &spec.queries["b"], defaults)
        .unwrap()
        .limits;
    assert_eq!(b.per_user.as_ref().unwrap().rule.burst, 5);
    assert_eq!(
        b.per_user.as_ref().unwrap().key("user", "u1"),
        "user:shop/b:u1"
    );
    assert!(b.per_key.is_none());
    assert_eq!(b.max_concurrency, 2);
    assert_eq!(b.running.as_ref().unwrap().available_permits(), 2);
    let plain = app("queries:\n  c: { datasource: db, sql: SELECT 1 }\n");
    let c = compile_query("shop", "c", &plain, &plain.queries["c"], defaults)
        .unwrap()
        .limits;
    assert_eq!(c.per_user.as_ref().unwrap().set_at, "instance");
    assert!(c.per_ip.is_none() && c.running.is_none());
}

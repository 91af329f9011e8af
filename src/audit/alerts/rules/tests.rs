//! Each rule raised at its threshold and not below it, with entries whose times play the
//! injected clock.

use super::*;
use crate::config::SignupSurge;

const T0: i64 = 1_800_000_000;

struct Log {
    detector: Detector,
    next_id: i64,
    apps: Vec<String>,
}

impl Log {
    fn new(settings: AlertSettings) -> Log {
        Log {
            detector: Detector::new(settings),
            next_id: 0,
            apps: vec!["shop".into(), "crm".into()],
        }
    }

    fn defaults() -> Log {
        Log::new(AlertSettings::default())
    }

    /// Feeds one entry and returns the ids of the rules it raised.
    fn feed(&mut self, event: AuditEvent) -> Vec<&'static str> {
        self.feed_alerts(event)
            .iter()
            .map(|alert| alert.rule.id)
            .collect()
    }

    fn feed_alerts(&mut self, mut event: AuditEvent) -> Vec<Alert> {
        self.next_id += 1;
        event.id = self.next_id;
        self.detector.observe(&event, &self.apps)
    }
}

fn entry(kind: &str, at: i64) -> AuditEvent {
    AuditEvent {
        id: 0,
        at,
        event: kind.into(),
        user_id: Some("u1".into()),
        email: Some("ada@example.com".into()),
        actor: None,
        ip: Some("203.0.113.7".into()),
        user_agent: None,
        reason: None,
        details: None,
    }
}

fn with(mut event: AuditEvent, details: Value) -> AuditEvent {
    event.details = Some(details.to_string());
    event
}

fn failure(ip: &str, at: i64) -> AuditEvent {
    AuditEvent {
        ip: Some(ip.into()),
        reason: Some("wrong_password".into()),
        ..entry("login_failed", at)
    }
}

#[test]
fn six_failures_from_one_address_in_a_minute_raise_one_alert() {
    let mut log = Log::defaults();
    for n in 0..5 {
        assert!(log.feed(failure("198.51.100.1", T0 + n * 10)).is_empty());
    }
    let alerts = log.feed_alerts(failure("198.51.100.1", T0 + 55));
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert.rule, SIGN_IN_FAILURES);
    assert_eq!(alert.trigger, 6);
    assert_eq!(alert.ip.as_deref(), Some("198.51.100.1"));
    assert_eq!(alert.email, None, "about the address, not an account");
    assert_eq!(
        alert.summary,
        "6 failed sign-ins from 198.51.100.1 within 60 s"
    );
    // The burst goes on: quiet for a window, then alerts again.
    for n in 0..5 {
        assert!(log.feed(failure("198.51.100.1", T0 + 100 + n)).is_empty());
    }
    assert_eq!(log.feed(failure("198.51.100.1", T0 + 116)), ["SLU-A001"]);
}

#[test]
fn failures_spread_over_time_or_addresses_raise_nothing() {
    let mut log = Log::defaults();
    // Six from one address, but over more than a minute.
    for n in 0..6 {
        assert!(log.feed(failure("198.51.100.1", T0 + n * 13)).is_empty());
    }
    // Many from different addresses.
    for n in 0..50 {
        assert!(
            log.feed(failure(&format!("198.51.101.{n}"), T0 + 70))
                .is_empty()
        );
    }
    // Entries without an address never count.
    let mut bare = failure("x", T0 + 71);
    bare.ip = None;
    for _ in 0..10 {
        assert!(log.feed(bare.clone()).is_empty());
    }
}

#[test]
fn the_sign_in_threshold_is_a_setting_and_can_be_off() {
    let mut log = Log::new(AlertSettings {
        sign_in_failures: Some(Threshold {
            count: 2,
            window_secs: 10,
        }),
        ..AlertSettings::default()
    });
    assert!(log.feed(failure("192.0.2.1", T0)).is_empty());
    assert!(log.feed(failure("192.0.2.1", T0 + 1)).is_empty());
    assert_eq!(log.feed(failure("192.0.2.1", T0 + 2)), ["SLU-A001"]);
    let mut off = Log::new(AlertSettings {
        sign_in_failures: None,
        ..AlertSettings::default()
    });
    for n in 0..20 {
        assert!(off.feed(failure("192.0.2.1", T0 + n)).is_empty());
    }
}

#[test]
fn a_lockout_burst_alerts_and_lone_lockouts_do_not() {
    let mut log = Log::defaults();
    let locked = |user: &str, at| AuditEvent {
        user_id: Some(user.into()),
        email: Some(format!("{user}@example.com")),
        ..entry("account_locked", at)
    };
    assert!(log.feed(locked("a", T0)).is_empty());
    assert!(log.feed(locked("b", T0 + 300)).is_empty());
    // The third within ten minutes of the first two: more than two.
    let alerts = log.feed_alerts(locked("c", T0 + 590));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, LOCKOUT_BURST);
    assert!(
        alerts[0]
            .summary
            .starts_with("3 accounts locked within 600 s")
    );
    // Lockouts an hour apart never alert.
    let mut slow = Log::defaults();
    for n in 0..10 {
        assert!(slow.feed(locked("a", T0 + n * 3600)).is_empty());
    }
}

fn signup(at: i64) -> AuditEvent {
    entry("signup_completed", at)
}

#[test]
fn signups_above_three_times_the_baseline_alert_once_a_day() {
    let mut log = Log::defaults();
    // Fourteen days of 5 signups a day: a baseline of 5.
    for day in 0..14 {
        for n in 0..5 {
            assert!(log.feed(signup(T0 + day * DAY + n * 600)).is_empty());
        }
    }
    let today = T0 + 14 * DAY + 3600;
    // 15 in the last day is not above 3x5.
    for n in 0..15 {
        assert!(log.feed(signup(today + n)).is_empty(), "signup {n}");
    }
    // The 16th is.
    let alerts = log.feed_alerts(signup(today + 20));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, SIGNUP_SURGE);
    assert_eq!(alerts[0].facts["last_day"], 16);
    assert_eq!(alerts[0].email, None);
    // Then quiet for a day.
    for n in 0..50 {
        assert!(log.feed(signup(today + 30 + n)).is_empty());
    }
}

#[test]
fn a_quiet_instance_needs_the_minimum_before_a_surge() {
    let mut log = Log::defaults();
    // No baseline at all: nine signups are below the minimum of ten.
    for n in 0..9 {
        assert!(log.feed(signup(T0 + n)).is_empty());
    }
    assert_eq!(log.feed(signup(T0 + 10)), ["SLU-A002"]);
    // SSO sign-ups count as signups; other account creations do not.
    let mut sso = Log::new(AlertSettings {
        signup_surge: Some(SignupSurge {
            factor: 3,
            baseline_days: 14,
            minimum: 2,
        }),
        ..AlertSettings::default()
    });
    let created = |via: Value| with(entry("user_created", T0), via);
    assert!(sso.feed(created(json!({"role": "viewer"}))).is_empty());
    assert!(sso.feed(created(json!({"role": "viewer"}))).is_empty());
    assert!(
        sso.feed(created(json!({"via": "sso", "role": "viewer"})))
            .is_empty()
    );
    assert_eq!(
        sso.feed(created(json!({"via": "sso", "role": "viewer"}))),
        ["SLU-A002"]
    );
}

fn role_changed(from: &str, to: &str, fresh: Option<bool>, actor: &str) -> AuditEvent {
    let mut details = json!({ "from": from, "to": to });
    if let Some(fresh) = fresh {
        details["fresh_auth"] = fresh.into();
    }
    AuditEvent {
        actor: Some(actor.into()),
        email: None,
        ..with(entry("role_changed", T0), details)
    }
}

#[test]
fn role_changes_say_who_changed_whom_and_whether_fresh_auth_covered_it() {
    let mut log = Log::defaults();
    let alerts = log.feed_alerts(role_changed("viewer", "developer", Some(true), "admin-1"));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, ROLE_CHANGED);
    assert_eq!(alerts[0].actor.as_deref(), Some("admin-1"));
    assert_eq!(alerts[0].user_id.as_deref(), Some("u1"));
    assert_eq!(
        alerts[0].summary,
        "admin-1 changed the role of user u1 from viewer to developer"
    );
    assert_eq!(alerts[0].facts["fresh_auth"], true);
    let outside = log.feed_alerts(role_changed("viewer", "developer", Some(false), "cli"));
    assert!(
        outside[0]
            .summary
            .ends_with("(outside an admin's fresh-auth action)")
    );
    // Old entries without the flag count as outside.
    let old = log.feed_alerts(role_changed("viewer", "developer", None, "cli"));
    assert_eq!(old[0].facts["fresh_auth"], false);
    // Promotion to admin is also a new admin.
    assert_eq!(
        log.feed(role_changed("developer", "admin", Some(true), "admin-1")),
        ["SLU-A003", "SLU-A005"]
    );
    // Off: nothing.
    let mut off = Log::new(AlertSettings {
        role_changes: false,
        new_admin: false,
        ..AlertSettings::default()
    });
    assert!(
        off.feed(role_changed("developer", "admin", Some(false), "cli"))
            .is_empty()
    );
}

#[test]
fn sso_claims_that_change_a_role_are_role_changes() {
    let mut log = Log::defaults();
    let claims = |details: Value| with(entry("sso_claims_applied", T0), details);
    assert_eq!(
        log.feed(claims(
            json!({"provider": "okta", "role": "admin", "from_role": "viewer"})
        )),
        ["SLU-A003", "SLU-A005"]
    );
    // Only groups changed: no role change.
    assert!(
        log.feed(claims(
            json!({"provider": "okta", "role": null, "groups_changed": true})
        ))
        .is_empty()
    );
}

#[test]
fn new_admins_are_reported_however_they_appear() {
    let mut log = Log::defaults();
    let created = |role: &str, actor: Option<&str>| AuditEvent {
        actor: actor.map(str::to_string),
        ..with(entry("user_created", T0), json!({ "role": role }))
    };
    let alerts = log.feed_alerts(created("admin", Some("cli")));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, NEW_ADMIN);
    assert_eq!(
        alerts[0].summary,
        "ada@example.com was created as an admin by cli"
    );
    assert!(log.feed(created("developer", Some("cli"))).is_empty());
    assert!(log.feed(created("viewer", None)).is_empty());
    // An admin staying admin is no new admin.
    assert_eq!(
        log.feed(role_changed("admin", "admin", Some(true), "a")),
        ["SLU-A003"]
    );
}

#[test]
fn mfa_turned_off_alerts_by_whoever_did_it() {
    let mut log = Log::defaults();
    let own = log.feed_alerts(entry("mfa_disabled", T0));
    assert_eq!(own[0].rule, MFA_DISABLED);
    assert_eq!(
        own[0].summary,
        "MFA of ada@example.com was turned off by the account"
    );
    let reset = log.feed_alerts(AuditEvent {
        actor: Some("admin-1".into()),
        reason: Some("reset_by_admin".into()),
        ..entry("mfa_disabled", T0)
    });
    assert_eq!(
        reset[0].summary,
        "MFA of ada@example.com was reset by admin-1"
    );
    assert!(log.feed(entry("mfa_enrolled", T0)).is_empty());
    let mut off = Log::new(AlertSettings {
        mfa_disabled: false,
        ..AlertSettings::default()
    });
    assert!(off.feed(entry("mfa_disabled", T0)).is_empty());
}

#[test]
fn api_keys_for_every_app_alert_and_narrower_ones_do_not() {
    let mut log = Log::defaults();
    let key = |apps: Value| {
        with(
            entry("api_key_created", T0),
            json!({ "key_id": "k1", "name": "ci", "scope": { "apps": apps, "queries": [] } }),
        )
    };
    let alerts = log.feed_alerts(key(json!(["crm", "shop"])));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, API_KEY_ALL_APPS);
    assert_eq!(
        alerts[0].summary,
        "ada@example.com created API key k1 for all 2 apps"
    );
    assert!(log.feed(key(json!(["shop"]))).is_empty());
    assert!(log.feed(key(json!([]))).is_empty());
    // A catalog of one app: a key for it is not "every app".
    log.apps = vec!["shop".into()];
    assert!(log.feed(key(json!(["shop"]))).is_empty());
}

fn admin_login(ip: &str, at: i64) -> AuditEvent {
    AuditEvent {
        ip: Some(ip.into()),
        ..with(entry("login_succeeded", at), json!({ "role": "admin" }))
    }
}

#[test]
fn an_admin_from_a_new_network_alerts_and_the_same_network_does_not() {
    let mut log = Log::defaults();
    // The first sign-in sets what is known.
    assert!(log.feed(admin_login("203.0.113.7", T0)).is_empty());
    // Same /24.
    assert!(log.feed(admin_login("203.0.113.200", T0 + 60)).is_empty());
    let alerts = log.feed_alerts(admin_login("198.51.100.9", T0 + 120));
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, ADMIN_NEW_NETWORK);
    assert_eq!(alerts[0].facts["network"], "198.51.100.0/24");
    // Known now.
    assert!(log.feed(admin_login("198.51.100.10", T0 + 180)).is_empty());
    // IPv6: the /48.
    assert!(
        !log.feed(admin_login("2001:db8:1:2::1", T0 + 200))
            .is_empty()
    );
    assert!(
        log.feed(admin_login("2001:db8:1:ffff::9", T0 + 210))
            .is_empty()
    );
    assert!(!log.feed(admin_login("2001:db8:2::1", T0 + 220)).is_empty());
    // Non-admins are not tracked.
    let viewer = AuditEvent {
        ip: Some("192.0.2.1".into()),
        ..with(
            entry("login_succeeded", T0 + 300),
            json!({ "role": "viewer" }),
        )
    };
    assert!(log.feed(viewer).is_empty());
    // A network unseen for longer than the look-back is new again (once another sign-in
    // in the look-back has set what is known).
    assert!(
        log.feed(admin_login("192.0.2.50", T0 + 91 * DAY - 10))
            .is_empty()
    );
    assert_eq!(
        log.feed(admin_login("203.0.113.7", T0 + 91 * DAY)),
        ["SLU-A008"]
    );
}

#[test]
fn networks_are_slash_24_and_slash_48() {
    assert_eq!(
        network_of("10.1.2.3".parse().unwrap()).to_string(),
        "10.1.2.0/24"
    );
    assert_eq!(
        network_of("::ffff:10.1.2.3".parse().unwrap()).to_string(),
        "10.1.2.0/24"
    );
    assert_eq!(
        network_of("2001:db8:abcd:12::1".parse().unwrap()).to_string(),
        "2001:db8:abcd::/48"
    );
}

#[test]
fn an_alert_entry_carries_its_rule_and_facts() {
    let mut log = Log::defaults();
    let alert = log.feed_alerts(entry("mfa_disabled", T0)).remove(0);
    let event = alert.to_event();
    assert_eq!(event.event, "alert");
    assert_eq!(event.reason.as_deref(), Some("mfa_disabled"));
    assert_eq!(event.at, T0);
    let details: Value = serde_json::from_str(event.details.as_deref().unwrap()).unwrap();
    assert_eq!(details["id"], "SLU-A004");
    assert_eq!(details["severity"], "high");
    assert_eq!(details["trigger"], 1);
    assert_eq!(details["reset_by_admin"], false);
}

#[test]
fn per_address_windows_are_forgotten_as_they_age() {
    let mut log = Log::defaults();
    for n in 0..3000 {
        log.feed(failure(&format!("10.0.{}.{}", n / 250, n % 250), T0 + n));
    }
    // Swept every 1024 entries: only the last minute's addresses (and those swept since)
    // remain.
    assert!(
        log.detector.failures.len() < 1100,
        "{}",
        log.detector.failures.len()
    );
}

#[test]
fn security_md_lists_every_rule_with_its_name_and_severity() {
    let doc = include_str!("../../../../docs/SECURITY.md");
    for rule in RULES {
        let row = format!("| {} | `{}` | {} |", rule.id, rule.name, rule.severity);
        assert!(doc.contains(&row), "docs/SECURITY.md lacks the row `{row}`");
    }
    let ids: Vec<_> = RULES.iter().map(|r| r.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(ids, sorted, "ids unique and in order");
}

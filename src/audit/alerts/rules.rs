//! The alert rules as a pure detector: [`Detector::observe`] takes audit entries in log
//! order and returns the alerts they raise, by the seed patterns of [`RULES`].
//!
//! No IO and no clock: every window is measured in the entries' own times (`at`, stamped
//! by the instance's injected clock when they were appended), so the same entries always
//! raise the same alerts, whichever replica reads them and whenever. State is bounded:
//! a window keeps at most its threshold's count of times, per-address windows are swept as
//! they age, signups are counted per hour, and an admin's networks are forgotten after the
//! look-back. A window that raised an alert stays quiet for one window length, so a burst
//! gives one alert, not one per entry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{Map, Value, json};

use crate::config::{AlertSettings, Threshold};
use crate::store::audit::AuditEvent;

/// One alert rule: its id (docs/SECURITY.md), name (the audit entry's `reason`), severity
/// and one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub name: &'static str,
    pub severity: &'static str,
    pub title: &'static str,
}

pub const SIGN_IN_FAILURES: Rule = Rule {
    id: "SLU-A001",
    name: "sign_in_failures",
    severity: "medium",
    title: "many failed sign-ins from one address",
};
pub const SIGNUP_SURGE: Rule = Rule {
    id: "SLU-A002",
    name: "signup_surge",
    severity: "medium",
    title: "signups far above their baseline",
};
pub const ROLE_CHANGED: Rule = Rule {
    id: "SLU-A003",
    name: "role_changed",
    severity: "medium",
    title: "an account's role changed",
};
pub const MFA_DISABLED: Rule = Rule {
    id: "SLU-A004",
    name: "mfa_disabled",
    severity: "high",
    title: "MFA turned off for an account",
};
pub const NEW_ADMIN: Rule = Rule {
    id: "SLU-A005",
    name: "new_admin",
    severity: "high",
    title: "an account became an admin",
};
pub const API_KEY_ALL_APPS: Rule = Rule {
    id: "SLU-A006",
    name: "api_key_all_apps",
    severity: "medium",
    title: "API key created for every app",
};
pub const LOCKOUT_BURST: Rule = Rule {
    id: "SLU-A007",
    name: "lockout_burst",
    severity: "high",
    title: "several accounts locked in a short time",
};
pub const ADMIN_NEW_NETWORK: Rule = Rule {
    id: "SLU-A008",
    name: "admin_new_network",
    severity: "high",
    title: "admin signed in from a new network",
};

/// Every rule, in id order (docs/SECURITY.md lists them; a test keeps the two in step).
pub const RULES: &[Rule] = &[
    SIGN_IN_FAILURES,
    SIGNUP_SURGE,
    ROLE_CHANGED,
    MFA_DISABLED,
    NEW_ADMIN,
    API_KEY_ALL_APPS,
    LOCKOUT_BURST,
    ADMIN_NEW_NETWORK,
];

/// An alert: which rule, the entry that raised it, and what to tell a human.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub rule: Rule,
    /// The id of the audit entry that crossed the threshold.
    pub trigger: i64,
    /// That entry's time.
    pub at: i64,
    /// One line, without secrets (names, addresses, counts).
    pub summary: String,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub actor: Option<String>,
    pub ip: Option<String>,
    /// The facts behind it (counts, roles, networks), shown in the entry's details.
    pub facts: Map<String, Value>,
}

impl Alert {
    fn new(rule: Rule, event: &AuditEvent, summary: String, facts: Value) -> Alert {
        Alert {
            rule,
            trigger: event.id,
            at: event.at,
            summary,
            user_id: event.user_id.clone(),
            email: event.email.clone(),
            actor: event.actor.clone(),
            ip: event.ip.clone(),
            facts: match facts {
                Value::Object(map) => map,
                _ => Map::new(),
            },
        }
    }

    /// The audit entry that records it: kind `alert`, the rule's name as the reason, and
    /// the rule, severity, summary, trigger and facts as details.
    pub fn to_event(&self) -> AuditEvent {
        let mut details = Map::new();
        details.insert("id".into(), self.rule.id.into());
        details.insert("severity".into(), self.rule.severity.into());
        details.insert("summary".into(), self.summary.clone().into());
        details.insert("trigger".into(), self.trigger.into());
        details.extend(self.facts.clone());
        AuditEvent {
            id: 0,
            at: self.at,
            event: "alert".into(),
            user_id: self.user_id.clone(),
            email: self.email.clone(),
            actor: self.actor.clone(),
            ip: self.ip.clone(),
            user_agent: None,
            reason: Some(self.rule.name.into()),
            details: Some(Value::Object(details).to_string()),
        }
    }
}

/// Times of recent events, for one threshold.
#[derive(Debug, Default)]
struct Window {
    times: VecDeque<i64>,
    /// No new alert before this time (one window after the last).
    quiet_until: i64,
}

impl Window {
    /// Records an event at `at`; the count within the window when it goes above the
    /// threshold (and the window is not quiet).
    fn hit(&mut self, at: i64, threshold: Threshold) -> Option<usize> {
        self.times.push_back(at);
        while self
            .times
            .front()
            .is_some_and(|first| *first <= at - threshold.window_secs)
        {
            self.times.pop_front();
        }
        // Only "more than count" matters: keep count + 1 times at most.
        while self.times.len() > threshold.count as usize + 1 {
            self.times.pop_front();
        }
        if self.times.len() > threshold.count as usize && at >= self.quiet_until {
            self.quiet_until = at + threshold.window_secs;
            return Some(self.times.len());
        }
        None
    }

    /// Nothing left in it at `now` that could still count or keep it quiet.
    fn expired(&self, now: i64, window_secs: i64) -> bool {
        self.quiet_until <= now
            && self
                .times
                .back()
                .is_none_or(|last| *last <= now - window_secs)
    }
}

/// How often (in entries) the per-address windows are swept.
const SWEEP_EVERY: u64 = 1024;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// The detector's state between entries.
pub struct Detector {
    settings: AlertSettings,
    failures: HashMap<String, Window>,
    lockouts: Window,
    /// Signups per hour (Unix hour number), for the surge rule.
    signups: BTreeMap<i64, u64>,
    surge_quiet_until: i64,
    /// Per admin: the networks they signed in from, with when last.
    admin_networks: HashMap<String, HashMap<IpNet, i64>>,
    observed: u64,
}

impl Detector {
    pub fn new(settings: AlertSettings) -> Detector {
        Detector {
            settings,
            failures: HashMap::new(),
            lockouts: Window::default(),
            signups: BTreeMap::new(),
            surge_quiet_until: i64::MIN,
            admin_networks: HashMap::new(),
            observed: 0,
        }
    }

    /// Whether any rule is on (none: the watcher does not run).
    pub fn any_on(&self) -> bool {
        let s = &self.settings;
        s.sign_in_failures.is_some()
            || s.signup_surge.is_some()
            || s.role_changes
            || s.mfa_disabled
            || s.new_admin
            || s.api_key_all_apps
            || s.lockout_burst.is_some()
            || s.admin_new_network_days.is_some()
    }

    /// The entries that hold the state at `now`, as (event kind, since): what the watcher
    /// replays, without raising alerts, when it starts.
    pub fn history(&self, now: i64) -> Vec<(&'static str, i64)> {
        let s = &self.settings;
        let mut kinds = Vec::new();
        if let Some(t) = s.sign_in_failures {
            kinds.push(("login_failed", now - t.window_secs));
        }
        if let Some(t) = s.lockout_burst {
            kinds.push(("account_locked", now - t.window_secs));
        }
        if let Some(surge) = s.signup_surge {
            let since = now - (i64::from(surge.baseline_days) + 1) * DAY;
            kinds.push(("signup_completed", since));
            kinds.push(("user_created", since));
        }
        if let Some(days) = s.admin_new_network_days {
            kinds.push(("login_succeeded", now - i64::from(days) * DAY));
        }
        kinds
    }

    /// The alerts `event` raises. `apps` are the catalog's app names (for the all-apps
    /// API key rule). Entries must come in log order; `alert` entries are ignored.
    pub fn observe(&mut self, event: &AuditEvent, apps: &[String]) -> Vec<Alert> {
        self.observed += 1;
        if self.observed.is_multiple_of(SWEEP_EVERY) {
            self.sweep(event.at);
        }
        let details: Value = event
            .details
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or(Value::Null);
        let text = |key: &str| details.get(key).and_then(Value::as_str);
        let who = || {
            event
                .email
                .clone()
                .or_else(|| event.user_id.as_ref().map(|id| format!("user {id}")))
                .unwrap_or_else(|| "an unknown account".into())
        };
        let mut alerts = Vec::new();
        match event.event.as_str() {
            "login_failed" => {
                if let (Some(threshold), Some(ip)) = (self.settings.sign_in_failures, &event.ip) {
                    let window = self.failures.entry(ip.clone()).or_default();
                    if let Some(count) = window.hit(event.at, threshold) {
                        let mut alert = Alert::new(
                            SIGN_IN_FAILURES,
                            event,
                            format!(
                                "{count} failed sign-ins from {ip} within {} s",
                                threshold.window_secs
                            ),
                            json!({ "count": count, "window_secs": threshold.window_secs }),
                        );
                        // About an address, not the last account it tried.
                        alert.user_id = None;
                        alert.email = None;
                        alerts.push(alert);
                    }
                }
            }
            "account_locked" => {
                if let Some(threshold) = self.settings.lockout_burst
                    && let Some(count) = self.lockouts.hit(event.at, threshold)
                {
                    alerts.push(Alert::new(
                        LOCKOUT_BURST,
                        event,
                        format!(
                            "{count} accounts locked within {} s, the last {}",
                            threshold.window_secs,
                            who()
                        ),
                        json!({ "count": count, "window_secs": threshold.window_secs }),
                    ));
                }
            }
            "signup_completed" => self.signup(event, &mut alerts),
            "user_created" => {
                if text("via") == Some("sso") {
                    self.signup(event, &mut alerts);
                }
                if self.settings.new_admin && text("role") == Some("admin") {
                    let by = event.actor.as_deref().unwrap_or("single sign-on");
                    alerts.push(Alert::new(
                        NEW_ADMIN,
                        event,
                        format!("{} was created as an admin by {by}", who()),
                        json!({ "via": "created" }),
                    ));
                }
            }
            "role_changed" => {
                let (from, to) = (text("from").unwrap_or("?"), text("to").unwrap_or("?"));
                let fresh = details.get("fresh_auth").and_then(Value::as_bool) == Some(true);
                let actor = event.actor.as_deref().unwrap_or("?");
                self.role_change(event, &who(), actor, from, to, fresh, &mut alerts);
            }
            "sso_claims_applied" => {
                if let Some(to) = text("role") {
                    let from = text("from_role").unwrap_or("?");
                    let actor = format!("single sign-on ({})", text("provider").unwrap_or("?"));
                    self.role_change(event, &who(), &actor, from, to, false, &mut alerts);
                }
            }
            "mfa_disabled" if self.settings.mfa_disabled => {
                let how = match (event.reason.as_deref(), &event.actor) {
                    (Some("reset_by_admin"), Some(actor)) => format!("reset by {actor}"),
                    (Some("reset_by_admin"), None) => "reset by an admin".into(),
                    _ => "turned off by the account".into(),
                };
                alerts.push(Alert::new(
                    MFA_DISABLED,
                    event,
                    format!("MFA of {} was {how}", who()),
                    json!({ "reset_by_admin": event.reason.as_deref() == Some("reset_by_admin") }),
                ));
            }
            "api_key_created" => {
                let scoped: Vec<&str> = details
                    .pointer("/scope/apps")
                    .and_then(Value::as_array)
                    .map(|apps| apps.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if self.settings.api_key_all_apps
                    && apps.len() >= 2
                    && apps.iter().all(|app| scoped.contains(&app.as_str()))
                {
                    let key = text("key_id").unwrap_or("?");
                    alerts.push(Alert::new(
                        API_KEY_ALL_APPS,
                        event,
                        format!(
                            "{} created API key {key} for all {} apps",
                            who(),
                            apps.len()
                        ),
                        json!({ "key_id": key, "apps": apps.len() }),
                    ));
                }
            }
            "login_succeeded" => {
                if let Some(days) = self.settings.admin_new_network_days
                    && text("role") == Some("admin")
                    && let (Some(user), Some(ip)) = (&event.user_id, &event.ip)
                    && let Ok(ip) = ip.parse::<IpAddr>()
                {
                    let network = network_of(ip);
                    let since = event.at - i64::from(days) * DAY;
                    let known = self.admin_networks.entry(user.clone()).or_default();
                    known.retain(|_, last| *last > since);
                    // An admin's first sign-in within the look-back sets what is known.
                    if !known.is_empty() && !known.contains_key(&network) {
                        alerts.push(Alert::new(
                            ADMIN_NEW_NETWORK,
                            event,
                            format!(
                                "admin {} signed in from {network}, not seen for them in {days} days",
                                who()
                            ),
                            json!({ "network": network.to_string(), "known_networks": known.len() }),
                        ));
                    }
                    known.insert(network, event.at);
                }
            }
            _ => {}
        }
        alerts
    }

    #[allow(clippy::too_many_arguments)]
    fn role_change(
        &self,
        event: &AuditEvent,
        who: &str,
        actor: &str,
        from: &str,
        to: &str,
        fresh_auth: bool,
        alerts: &mut Vec<Alert>,
    ) {
        if self.settings.role_changes {
            let outside = if fresh_auth {
                ""
            } else {
                " (outside an admin's fresh-auth action)"
            };
            alerts.push(Alert::new(
                ROLE_CHANGED,
                event,
                format!("{actor} changed the role of {who} from {from} to {to}{outside}"),
                json!({ "from": from, "to": to, "fresh_auth": fresh_auth }),
            ));
        }
        if self.settings.new_admin && to == "admin" && from != "admin" {
            alerts.push(Alert::new(
                NEW_ADMIN,
                event,
                format!("{who} became an admin (was {from}), by {actor}"),
                json!({ "via": "role_change", "from": from }),
            ));
        }
    }

    fn signup(&mut self, event: &AuditEvent, alerts: &mut Vec<Alert>) {
        let Some(surge) = self.settings.signup_surge else {
            return;
        };
        let hour = event.at.div_euclid(HOUR);
        *self.signups.entry(hour).or_default() += 1;
        let days = i64::from(surge.baseline_days);
        let oldest = hour - (days + 1) * 24;
        self.signups = self.signups.split_off(&(oldest + 1));
        let last_day: u64 = self.signups.range(hour - 23..=hour).map(|(_, n)| n).sum();
        let before: u64 = self
            .signups
            .range(oldest + 1..hour - 23)
            .map(|(_, n)| n)
            .sum();
        let baseline = before as f64 / days as f64;
        if last_day >= u64::from(surge.minimum)
            && last_day as f64 > f64::from(surge.factor) * baseline
            && event.at >= self.surge_quiet_until
        {
            self.surge_quiet_until = event.at + DAY;
            let mut alert = Alert::new(
                SIGNUP_SURGE,
                event,
                format!(
                    "{last_day} signups in the last 24 hours against a daily average of {baseline:.1} over the {days} days before"
                ),
                json!({ "last_day": last_day, "baseline_per_day": baseline, "factor": surge.factor }),
            );
            alert.user_id = None;
            alert.email = None;
            alerts.push(alert);
        }
    }

    /// Forgets per-address windows with nothing left in them.
    fn sweep(&mut self, now: i64) {
        if let Some(threshold) = self.settings.sign_in_failures {
            self.failures
                .retain(|_, window| !window.expired(now, threshold.window_secs));
        }
    }
}

/// The /24 (IPv4) or /48 (IPv6) an address is in; an IPv4-mapped IPv6 address counts as
/// IPv4.
pub fn network_of(ip: IpAddr) -> IpNet {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let prefix = if ip.is_ipv4() { 24 } else { 48 };
    IpNet::new(ip, prefix)
        .map(|net| net.trunc())
        .unwrap_or_else(|_| IpNet::from(ip))
}

#[cfg(test)]
mod tests;

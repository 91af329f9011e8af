//! The SSO file (`SLUICE_SSO_FILE`): the OpenID Connect providers people sign in with and
//! the JWT issuers whose bearer tokens apps may send, read once at start-up.
//!
//! Owns the file's shape (`deny_unknown_fields` everywhere, so a typo is an error naming its
//! path) and its checks: names, issuer URLs (https, or http only to a loopback host), the
//! allowed algorithms (asymmetric only: never `none`, never an HMAC algorithm, whose "key"
//! would be the provider's public key), one client secret source per provider, and claim
//! names. A client secret is read from its file or variable here and kept as a
//! [`SecretString`]; it never appears in an error or in `Debug`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::auth::Role;
use crate::vault::SecretString;

/// Algorithms a provider or issuer may be allowed: RSA, RSA-PSS, ECDSA and EdDSA.
pub const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Default allowed algorithms where the file names none.
const DEFAULT_ALGORITHMS: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256];

/// Default clock skew for `exp`, `nbf` and `iat`.
const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Largest clock skew the file may set.
const MAX_LEEWAY_SECS: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read the SSO file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("the SSO file {path} is not valid: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("the SSO file {path}: {at}: {reason}")]
    Invalid {
        path: PathBuf,
        at: String,
        reason: String,
    },
}

/// What the SSO file holds, checked.
#[derive(Debug, Clone, Default)]
pub struct SsoSettings {
    pub providers: Vec<ProviderSettings>,
    pub issuers: Vec<IssuerSettings>,
    /// Private networks the providers and issuers may be reached on (beside
    /// `SLUICE_EGRESS_ALLOW`).
    pub egress_allow: Vec<ipnet::IpNet>,
}

/// Who a federated identity becomes: its role and groups, from its claims.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    /// The role for an identity no rule below places.
    pub default_role: Role,
    /// A claim whose value is a role name (`admin`, `developer`, `viewer`).
    pub role_claim: Option<String>,
    /// Groups that grant a role; the highest role granted wins.
    pub role_groups: Vec<(Role, Vec<String>)>,
    /// The claim holding the identity's groups (a list of strings).
    pub groups_claim: Option<String>,
}

/// One OpenID Connect provider people sign in with.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// The provider's name in URLs (`/v1/auth/oidc/{name}/start`) and in links.
    pub name: String,
    /// What a sign-in page shows.
    pub label: String,
    /// The issuer; discovery is read from `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub scopes: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway_secs: u64,
    /// Email domains an email from this provider is trusted for (linking by email, creating
    /// accounts); `["*"]` trusts any verified email. Empty: `SLUICE_SIGNUP_ALLOWED_DOMAINS`.
    pub allowed_domains: Vec<String>,
    /// Create an account on first sign-in (just in time) when none matches.
    pub create_users: bool,
    /// Sign a verified, trusted email in to the local account that has it (for a company
    /// provider that owns the domain); off: only the account's owner links.
    pub link_verified_email: bool,
    pub mapping: ClaimMapping,
    /// Replace the account's groups with the groups claim at each sign-in.
    pub sync_groups: bool,
}

/// One issuer of bearer JWTs apps send (`Authorization: Bearer <JWT>`).
#[derive(Debug, Clone)]
pub struct IssuerSettings {
    pub name: String,
    /// The `iss` its tokens carry.
    pub issuer: String,
    /// Where its keys are; else discovery from the issuer.
    pub jwks_url: Option<String>,
    /// Accepted `aud` values: a token must name at least one.
    pub audience: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway_secs: u64,
    pub email_claim: String,
    pub mapping: ClaimMapping,
    /// Claims templates may read as `{{ user.claims.NAME }}`.
    pub claims: Vec<String>,
}

// ----- The file as written --------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    egress_allow: Vec<String>,
    #[serde(default)]
    oidc: Vec<ProviderFile>,
    #[serde(default)]
    jwt: Vec<IssuerFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    default_role: Option<String>,
    #[serde(default)]
    role_claim: Option<String>,
    #[serde(default)]
    role_groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    groups_claim: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    name: String,
    #[serde(default)]
    label: Option<String>,
    issuer: String,
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    client_secret_file: Option<PathBuf>,
    #[serde(default)]
    client_secret_env: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    leeway_seconds: Option<u64>,
    #[serde(default)]
    allowed_domains: Vec<String>,
    #[serde(default)]
    create_users: bool,
    #[serde(default)]
    link_verified_email: bool,
    #[serde(default = "yes")]
    sync_groups: bool,
    #[serde(flatten)]
    mapping: MappingFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssuerFile {
    name: String,
    issuer: String,
    #[serde(default)]
    jwks_url: Option<String>,
    audience: Vec<String>,
    #[serde(default)]
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    leeway_seconds: Option<u64>,
    #[serde(default)]
    email_claim: Option<String>,
    #[serde(default)]
    claims: Vec<String>,
    #[serde(flatten)]
    mapping: MappingFile,
}

fn yes() -> bool {
    true
}

/// Reads and checks the SSO file. `env` looks up a `client_secret_env` variable.
pub fn load(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SsoSettings, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Read {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    parse(&text, path, env)
}

/// Parses and checks the SSO file's text (`path` only names it in errors).
pub fn parse(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SsoSettings, SettingsError> {
    let file: File = serde_norway::from_str(text).map_err(|e| SettingsError::Parse {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let invalid = |at: String, reason: String| SettingsError::Invalid {
        path: path.to_owned(),
        at,
        reason,
    };
    let egress_allow = crate::egress::parse_cidrs(file.egress_allow.iter().map(String::as_str))
        .map_err(|e| invalid("egress_allow".into(), e.to_string()))?;
    let mut names = std::collections::BTreeSet::new();
    let mut providers = Vec::new();
    for (index, provider) in file.oidc.into_iter().enumerate() {
        let at = format!("oidc[{index}]");
        check_name(&provider.name).map_err(|r| invalid(format!("{at}.name"), r))?;
        if !names.insert(provider.name.clone()) {
            return Err(invalid(
                format!("{at}.name"),
                format!("`{}` is used twice", provider.name),
            ));
        }
        providers.push(
            provider_settings(provider, env).map_err(|(f, r)| invalid(format!("{at}.{f}"), r))?,
        );
    }
    let mut issuers = Vec::new();
    let mut issuer_names = std::collections::BTreeSet::new();
    for (index, issuer) in file.jwt.into_iter().enumerate() {
        let at = format!("jwt[{index}]");
        check_name(&issuer.name).map_err(|r| invalid(format!("{at}.name"), r))?;
        if !issuer_names.insert(issuer.name.clone()) {
            return Err(invalid(
                format!("{at}.name"),
                format!("`{}` is used twice", issuer.name),
            ));
        }
        issuers.push(issuer_settings(issuer).map_err(|(f, r)| invalid(format!("{at}.{f}"), r))?);
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, issuer) in issuers.iter().enumerate() {
        if !seen.insert(issuer.issuer.as_str()) {
            return Err(invalid(
                format!("jwt[{index}].issuer"),
                "two issuers with the same `issuer`: a token could not say which one it is".into(),
            ));
        }
    }
    Ok(SsoSettings {
        providers,
        issuers,
        egress_allow,
    })
}

type FieldError = (&'static str, String);

fn provider_settings(
    file: ProviderFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ProviderSettings, FieldError> {
    let issuer = check_url(&file.issuer).map_err(|r| ("issuer", r))?;
    if file.client_id.trim().is_empty() {
        return Err(("client_id", "must not be empty".into()));
    }
    let sources = [
        file.client_secret.is_some(),
        file.client_secret_file.is_some(),
        file.client_secret_env.is_some(),
    ];
    if sources.iter().filter(|set| **set).count() > 1 {
        return Err((
            "client_secret",
            "set one of client_secret, client_secret_file and client_secret_env".into(),
        ));
    }
    let client_secret = if let Some(secret) = file.client_secret {
        Some(secret)
    } else if let Some(path) = &file.client_secret_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                "client_secret_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        Some(text.trim_end_matches(['\r', '\n']).to_owned())
    } else if let Some(name) = &file.client_secret_env {
        Some(env(name).ok_or(("client_secret_env", format!("`{name}` is not set")))?)
    } else {
        None
    }
    .filter(|s| !s.is_empty())
    .map(SecretString::from);
    let scopes = file
        .scopes
        .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
    if !scopes.iter().any(|s| s == "openid") {
        return Err(("scopes", "must include `openid`".into()));
    }
    if let Some(bad) = scopes.iter().find(|s| !is_token(s)) {
        return Err(("scopes", format!("`{bad}` is not a scope name")));
    }
    let allowed_domains = file
        .allowed_domains
        .iter()
        .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
        .collect::<Vec<_>>();
    if allowed_domains.iter().any(|d| d.is_empty()) {
        return Err(("allowed_domains", "an entry is empty".into()));
    }
    if file.link_verified_email
        && (allowed_domains.is_empty() || allowed_domains.iter().any(|d| d == "*"))
    {
        return Err((
            "link_verified_email",
            "links local accounts by email: name the domains this provider owns in              `allowed_domains` (not `*`)"
                .into(),
        ));
    }
    Ok(ProviderSettings {
        label: file.label.unwrap_or_else(|| file.name.clone()),
        name: file.name,
        issuer,
        client_id: file.client_id,
        client_secret,
        scopes,
        algorithms: algorithms(file.algorithms)?,
        leeway_secs: leeway(file.leeway_seconds)?,
        allowed_domains,
        create_users: file.create_users,
        link_verified_email: file.link_verified_email,
        mapping: mapping(file.mapping)?,
        sync_groups: file.sync_groups,
    })
}

fn issuer_settings(file: IssuerFile) -> Result<IssuerSettings, FieldError> {
    let issuer = check_url(&file.issuer).map_err(|r| ("issuer", r))?;
    let jwks_url = match &file.jwks_url {
        Some(url) => Some(check_url(url).map_err(|r| ("jwks_url", r))?),
        None => None,
    };
    if file.audience.is_empty() || file.audience.iter().any(|a| a.trim().is_empty()) {
        return Err((
            "audience",
            "name at least one audience: a token made for another API must not open this one"
                .into(),
        ));
    }
    for claim in &file.claims {
        if !is_claim_name(claim) {
            return Err((
                "claims",
                format!("`{claim}` is not a claim name (letters, digits, `_`)"),
            ));
        }
    }
    Ok(IssuerSettings {
        name: file.name,
        issuer,
        jwks_url,
        audience: file.audience,
        algorithms: algorithms(file.algorithms)?,
        leeway_secs: leeway(file.leeway_seconds)?,
        email_claim: file.email_claim.unwrap_or_else(|| "email".into()),
        mapping: mapping(file.mapping)?,
        claims: file.claims,
    })
}

fn mapping(file: MappingFile) -> Result<ClaimMapping, FieldError> {
    let role = |name: &str, field| {
        Role::parse(name).ok_or_else(|| {
            (
                field,
                format!("`{name}` is not a role (admin, developer, viewer)"),
            )
        })
    };
    let default_role = match &file.default_role {
        Some(name) => role(name, "default_role")?,
        None => Role::Viewer,
    };
    let mut role_groups = Vec::new();
    for (name, groups) in file.role_groups {
        role_groups.push((role(&name, "role_groups")?, groups));
    }
    Ok(ClaimMapping {
        default_role,
        role_claim: file.role_claim,
        role_groups,
        groups_claim: file.groups_claim,
    })
}

fn algorithms(names: Option<Vec<String>>) -> Result<Vec<Algorithm>, FieldError> {
    let Some(names) = names else {
        return Ok(DEFAULT_ALGORITHMS.to_vec());
    };
    if names.is_empty() {
        return Err(("algorithms", "name at least one algorithm".into()));
    }
    names
        .iter()
        .map(|name| {
            name.parse::<Algorithm>()
                .ok()
                .filter(|alg| ASYMMETRIC.contains(alg))
                .ok_or((
                    "algorithms",
                    format!(
                        "`{name}` is not allowed: use RS256, RS384, RS512, PS256, PS384, PS512, \
                         ES256, ES384 or EdDSA (never `none` or an HMAC algorithm)"
                    ),
                ))
        })
        .collect()
}

fn leeway(seconds: Option<u64>) -> Result<u64, FieldError> {
    match seconds {
        None => Ok(DEFAULT_LEEWAY_SECS),
        Some(s) if s <= MAX_LEEWAY_SECS => Ok(s),
        Some(_) => Err((
            "leeway_seconds",
            format!("at most {MAX_LEEWAY_SECS} seconds"),
        )),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` must be 1-40 characters of a-z, 0-9, `-` and `_` (it appears in URLs)"
        ))
    }
}

/// Whether a provider URL may be used: https, or http to a loopback host (a provider on
/// this machine). The one rule for the SSO file's URLs and the ones discovery hands back.
pub fn https_or_loopback(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(crate::egress::is_loopback_host),
        _ => false,
    }
}

/// An issuer or key URL ([`https_or_loopback`]). Without a trailing `/` for issuers that
/// have none; kept as written otherwise, since `iss` is compared exactly.
fn check_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if !https_or_loopback(&url) {
        return Err(format!(
            "`{text}` must be an https URL (http only to a loopback host)"
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{text}` must not carry a user name or password"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not have a query or fragment"));
    }
    Ok(text.to_owned())
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// A claim name templates may use: what `{{ user.claims.NAME }}` can spell.
pub fn is_claim_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<SsoSettings, SettingsError> {
        parse(text, Path::new("sso.yaml"), &|name| {
            (name == "CORP_SECRET").then(|| "s3cret".to_owned())
        })
    }

    #[test]
    fn a_full_file_parses() {
        let settings = parse_str(
            "egress_allow: [127.0.0.0/8]
oidc:
  - name: corp
    issuer: http://127.0.0.1:9100
    client_id: sluice
    client_secret_env: CORP_SECRET
    allowed_domains: ['@Example.com']
    create_users: true
    groups_claim: groups
    role_groups: { admin: [ops] }
jwt:
  - name: auth0
    issuer: https://tenant.example/
    audience: [api]
    algorithms: [RS256, ES256]
    claims: [tenant_id]
",
        )
        .unwrap();
        let corp = &settings.providers[0];
        assert_eq!(corp.label, "corp");
        assert_eq!(corp.allowed_domains, ["example.com"]);
        assert_eq!(corp.client_secret.as_ref().unwrap().expose(), "s3cret");
        assert_eq!(
            corp.mapping.role_groups,
            [(Role::Admin, vec!["ops".to_owned()])]
        );
        assert_eq!(settings.issuers[0].claims, ["tenant_id"]);
        assert_eq!(settings.egress_allow.len(), 1);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                "oidc: [{name: Corp, issuer: 'https://x', client_id: a}]",
                "oidc[0].name",
            ),
            (
                "oidc: [{name: c, issuer: 'http://idp.example', client_id: a}]",
                "oidc[0].issuer",
            ),
            (
                "oidc: [{name: c, issuer: 'https://u:p@x', client_id: a}]",
                "oidc[0].issuer",
            ),
            (
                "oidc: [{name: c, issuer: 'https://x', client_id: a, algorithms: [HS256]}]",
                "oidc[0].algorithms",
            ),
            (
                "oidc: [{name: c, issuer: 'https://x', client_id: a, algorithms: [none]}]",
                "oidc[0].algorithms",
            ),
            (
                "oidc: [{name: c, issuer: 'https://x', client_id: a, scopes: [email]}]",
                "oidc[0].scopes",
            ),
            (
                "oidc: [{name: c, issuer: 'https://x', client_id: a, client_secret: x, client_secret_env: CORP_SECRET}]",
                "oidc[0].client_secret",
            ),
            (
                "oidc: [{name: c, issuer: 'https://x', client_id: a, client_secret_env: NOPE}]",
                "oidc[0].client_secret_env",
            ),
            (
                "oidc: [{name: c, issuer: 'https://x', client_id: a, default_role: root}]",
                "oidc[0].default_role",
            ),
            (
                "oidc: [{name: c, issuer: 'https://x', client_id: a, leeway_seconds: 3600}]",
                "oidc[0].leeway_seconds",
            ),
            (
                "jwt: [{name: j, issuer: 'https://x', audience: []}]",
                "jwt[0].audience",
            ),
            (
                "jwt: [{name: j, issuer: 'https://x', audience: [a], claims: ['a.b']}]",
                "jwt[0].claims",
            ),
            (
                "jwt: [{name: j, issuer: 'https://x', audience: [a]}, {name: k, issuer: 'https://x', audience: [b]}]",
                "jwt[1].issuer",
            ),
        ];
        for (text, at) in cases {
            let error = parse_str(text).unwrap_err().to_string();
            assert!(error.contains(at), "{text}: {error}");
            assert!(!error.contains("s3cret"), "{error}");
        }
        let error = parse_str("oidc: [{name: c, issuer: 'https://x', client_id: a, clientid: b}]")
            .unwrap_err()
            .to_string();
        assert!(error.contains("clientid"), "{error}");
    }
}

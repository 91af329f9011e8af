//! Checks that only read a spec: valid names, which fields of a datasource hold secrets,
//! how a database datasource's TLS settings fit together, and an HTTP datasource's base
//! URL, allowed methods and headers. Pure: used when a catalog
//! is compiled (so a bad spec never reaches serving) and again when a pool is built.

use http::{HeaderName, HeaderValue, Method};
use url::Url;

use super::{DatasourceSpec, HttpAuthSpec, HttpDatasourceSpec, NetworkDatabaseSpec, TlsMode};

/// Headers a datasource or query may not set: the transport's own, and `Authorization`
/// (credentials come from the datasource's sealed `auth`).
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "authorization",
    "proxy-authorization",
    "proxy-connection",
];

/// Whether a name can be used for an app, query or datasource (it appears in URLs and in
/// secret owners): 1-64 of `A-Z a-z 0-9 _ -`, starting with a letter or digit.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The longest part of a caller-supplied name (an app, query, param or member name) that an
/// error message quotes: a valid name is never longer, and a client that sends thousands of
/// characters does not get them echoed back.
pub const MAX_SHOWN_NAME: usize = 64;

/// `name` as an error message quotes it: cut after [`MAX_SHOWN_NAME`] characters, with
/// `...` to show it was cut.
pub fn shown_name(name: &str) -> std::borrow::Cow<'_, str> {
    match name.char_indices().nth(MAX_SHOWN_NAME) {
        Some((end, _)) => format!("{}...", &name[..end]).into(),
        None => name.into(),
    }
}

/// What [`is_valid_name`] requires, for error messages.
pub const NAME_RULE: &str =
    "names are 1-64 characters of A-Z, a-z, 0-9, `_` and `-`, starting with a letter or digit";

impl DatasourceSpec {
    /// The fields of this datasource that hold secrets, with their (sealed) values.
    pub fn secret_fields(&self) -> Vec<(&'static str, Option<&str>)> {
        match self {
            DatasourceSpec::Postgres(net) | DatasourceSpec::Mysql(net) => vec![
                ("password", net.password.as_deref()),
                ("tls_client_key", net.tls_client_key.as_deref()),
            ],
            DatasourceSpec::Sqlite(_) => Vec::new(),
            DatasourceSpec::Http(http) => match &http.auth {
                None => Vec::new(),
                Some(HttpAuthSpec::Bearer { token }) => vec![("bearer", Some(token.as_str()))],
                Some(HttpAuthSpec::Basic { password, .. }) => {
                    vec![("basic_password", Some(password.as_str()))]
                }
                Some(HttpAuthSpec::ApiKey { value, .. }) => {
                    vec![("api_key", Some(value.as_str()))]
                }
            },
        }
    }

    /// The secret fields that are set, to rewrite in place (key rotation re-seals them); the
    /// same fields and names as [`DatasourceSpec::secret_fields`].
    pub fn secret_fields_mut(&mut self) -> Vec<(&'static str, &mut String)> {
        match self {
            DatasourceSpec::Postgres(net) | DatasourceSpec::Mysql(net) => {
                let mut fields = Vec::new();
                if let Some(password) = net.password.as_mut() {
                    fields.push(("password", password));
                }
                if let Some(key) = net.tls_client_key.as_mut() {
                    fields.push(("tls_client_key", key));
                }
                fields
            }
            DatasourceSpec::Sqlite(_) => Vec::new(),
            DatasourceSpec::Http(http) => match &mut http.auth {
                None => Vec::new(),
                Some(HttpAuthSpec::Bearer { token }) => vec![("bearer", token)],
                Some(HttpAuthSpec::Basic { password, .. }) => vec![("basic_password", password)],
                Some(HttpAuthSpec::ApiKey { value, .. }) => vec![("api_key", value)],
            },
        }
    }

    /// The datasource's own egress allow list (empty for SQLite files).
    pub fn egress_allow(&self) -> &[String] {
        match self {
            DatasourceSpec::Postgres(net) | DatasourceSpec::Mysql(net) => &net.egress_allow,
            DatasourceSpec::Http(http) => &http.egress_allow,
            DatasourceSpec::Sqlite(_) => &[],
        }
    }
}

impl NetworkDatabaseSpec {
    /// Checks that the TLS settings fit together (files are read when pools are built):
    /// a client certificate comes with its key, TLS files are not set while TLS is off, a
    /// CA file is not set for `require` (which checks no certificate), and `verify-ca` is
    /// for PostgreSQL only. `mode` is the mode in force ([`NetworkDatabaseSpec::tls_mode`]).
    /// The error names the field at fault.
    pub fn check_tls(&self, mode: TlsMode, mysql: bool) -> Result<(), (&'static str, String)> {
        match (&self.tls_client_cert_file, &self.tls_client_key) {
            (Some(_), None) => {
                return Err((
                    "tls_client_key",
                    "`tls_client_cert_file` is set without its key; seal the PEM key with \
                     `sluice secret seal --owner datasource/<name>/tls_client_key` and set it"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err((
                    "tls_client_cert_file",
                    "`tls_client_key` is set without `tls_client_cert_file` (the certificate \
                     the key belongs to)"
                        .into(),
                ));
            }
            _ => {}
        }
        let files = [
            ("tls_ca_file", self.tls_ca_file.is_some()),
            ("tls_client_cert_file", self.tls_client_cert_file.is_some()),
        ];
        if mode == TlsMode::Disable
            && let Some((field, _)) = files.iter().find(|(_, set)| *set)
        {
            let why = if self.tls.is_some() {
                "`tls: disable`"
            } else {
                "`tls` unset on a loopback host, which means disable"
            };
            return Err((
                field,
                format!("`{field}` is set but TLS is off ({why}); set `tls: verify-full`"),
            ));
        }
        if mode == TlsMode::Require && self.tls_ca_file.is_some() {
            return Err((
                "tls_ca_file",
                "`tls: require` checks no certificate, so `tls_ca_file` would be ignored; use \
                 `tls: verify-full` (or `verify-ca`) to check the server against this CA"
                    .into(),
            ));
        }
        if mysql && mode == TlsMode::VerifyCa {
            return Err((
                "tls",
                "`verify-ca` is not available for MySQL/MariaDB (the driver cannot skip only \
                 the host name check); use `verify-full` with a host name the server's \
                 certificate lists"
                    .into(),
            ));
        }
        for (field, path) in [
            ("tls_ca_file", &self.tls_ca_file),
            ("tls_client_cert_file", &self.tls_client_cert_file),
        ] {
            if path.as_deref().is_some_and(|p| p.trim().is_empty()) {
                return Err((
                    field,
                    format!("`{field}` is empty; give the path of a PEM file"),
                ));
            }
        }
        Ok(())
    }
}

impl HttpDatasourceSpec {
    /// The methods queries on this datasource may use.
    pub fn allowed_methods(&self) -> Result<Vec<Method>, String> {
        match &self.allowed_methods {
            None => Ok(vec![Method::GET, Method::POST]),
            Some(list) => list
                .iter()
                .map(|m| match m.to_ascii_uppercase().as_str() {
                    "GET" => Ok(Method::GET),
                    "POST" => Ok(Method::POST),
                    "PUT" => Ok(Method::PUT),
                    "PATCH" => Ok(Method::PATCH),
                    "DELETE" => Ok(Method::DELETE),
                    _ => Err(format!(
                        "allowed_methods: `{m}` is not one of GET, POST, PUT, PATCH, DELETE"
                    )),
                })
                .collect(),
        }
    }

    /// Checks the settings (apply time): a plain http(s) base URL without credentials,
    /// query or fragment; valid headers; one place for an API key.
    pub fn check(&self) -> Result<(), String> {
        self.base_url()?;
        self.allowed_methods()?;
        for (name, value) in &self.headers {
            check_header(name)?;
            HeaderValue::from_str(value)
                .map_err(|_| format!("headers.{name}: not a valid header value"))?;
        }
        if let Some(HttpAuthSpec::ApiKey { header, query, .. }) = &self.auth {
            match (header, query) {
                (Some(header), None) => check_header(header)?,
                (None, Some(query)) if !query.is_empty() => {}
                _ => return Err("auth.api_key: give exactly one of `header` or `query`".into()),
            }
        }
        Ok(())
    }

    /// The base URL, parsed and checked.
    pub fn base_url(&self) -> Result<Url, String> {
        let url = Url::parse(&self.base_url).map_err(|e| format!("base_url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("base_url: must be http:// or https://".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "base_url: credentials in the URL are refused; use `auth` with a sealed secret"
                    .into(),
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(
                "base_url: no query or fragment; put query parameters in the queries".into(),
            );
        }
        if url.host_str().is_none() {
            return Err("base_url: needs a host".into());
        }
        Ok(url)
    }
}

fn check_header(name: &str) -> Result<(), String> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("`{name}` is not a valid header name"))?;
    if FORBIDDEN_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "header `{name}` cannot be set here (transport header, or a credential that belongs in `auth`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(yaml: &str) -> NetworkDatabaseSpec {
        serde_norway::from_str(yaml).expect("a network datasource")
    }

    #[test]
    fn tls_settings_must_fit_together() {
        let base = "host: db, database: d, user: u";
        let check = |extra: &str, mysql: bool| {
            let spec = net(&format!("{{{base}{extra}}}"));
            let mode = spec.tls_mode(false);
            spec.check_tls(mode, mysql).map_err(|(field, _)| field)
        };
        assert_eq!(check("", false), Ok(()));
        assert_eq!(check(", tls: require", false), Ok(()));
        assert_eq!(
            check(", tls: verify-ca, tls_ca_file: ca.pem", false),
            Ok(())
        );
        assert_eq!(
            check(
                ", tls_client_cert_file: c.pem, tls_client_key: enc:v1:x",
                true
            ),
            Ok(())
        );
        assert_eq!(
            check(", tls_client_cert_file: c.pem", false),
            Err("tls_client_key")
        );
        assert_eq!(
            check(", tls_client_key: enc:v1:x", false),
            Err("tls_client_cert_file")
        );
        assert_eq!(
            check(", tls: disable, tls_ca_file: ca.pem", false),
            Err("tls_ca_file")
        );
        assert_eq!(
            check(", tls: require, tls_ca_file: ca.pem", false),
            Err("tls_ca_file")
        );
        assert_eq!(check(", tls: verify-ca", true), Err("tls"));
        assert_eq!(check(", tls_ca_file: ' '", false), Err("tls_ca_file"));
    }

    #[test]
    fn unset_tls_is_verify_full_off_loopback_and_off_on_it() {
        let spec = net("{host: db, database: d, user: u, tls_ca_file: ca.pem}");
        assert_eq!(spec.tls_mode(false), TlsMode::VerifyFull);
        assert_eq!(spec.tls_mode(true), TlsMode::Disable);
        // A CA file on loopback with `tls` unset is a mistake worth naming.
        let (field, message) = spec.check_tls(spec.tls_mode(true), false).unwrap_err();
        assert_eq!(field, "tls_ca_file");
        assert!(message.contains("loopback"), "{message}");
    }
}

//! The HTTP API test: DNS, egress and TCP as for every networked datasource, then a `GET` of
//! the base URL through the datasource's own client (its headers, credential, redirects and
//! checking resolver). Any HTTP status counts as reachable and is reported; for `https://`
//! the TLS step is that request's handshake, so a certificate problem is put on it.

use std::time::{Duration, Instant};

use super::network::{self, Target};
use super::{Failure, Passed, Recorder};
use crate::datasource::http::{BaseRequestError, HttpSource};
use crate::datasource::tls::find_rustls_error;
use crate::spec::HttpDatasourceSpec;

const STEPS: &[&str] = &["dns", "egress", "tcp", "tls", "request"];

pub(super) async fn probe(
    source: &HttpSource,
    name: &str,
    spec: &HttpDatasourceSpec,
) -> super::ProbeReport {
    let mut recorder = Recorder::new(name, "http", STEPS);
    let (base, host, port, policy, bind, connect_timeout) = source.target();
    let https = base.scheme() == "https";
    let target = Target {
        host,
        port,
        policy,
        egress_allow: &spec.egress_allow,
        bind,
        connect_timeout,
    };
    let Some((_, stream)) = network::reach(&mut recorder, &target).await else {
        return recorder.finish();
    };
    drop(stream);
    let started = Instant::now();
    let outcome = source.get_base().await;
    let timeout = spec
        .timeout_ms
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10));
    match outcome {
        Ok(status) => {
            if https {
                recorder.record(
                    "tls",
                    started.elapsed(),
                    Ok(Passed::new(
                        (),
                        "certificate checked against this system's roots and the host name \
                         (timed with the request)",
                    )),
                );
            } else {
                recorder.skip("tls", Some("plain http://".into()));
            }
            let passed = Passed::new((), format!("GET of the base URL answered HTTP {status}"));
            let passed = match status {
                401 | 403 => passed.with_hint(
                    "the API is reachable but refused the request: check `auth` (the sealed \
                     credential) if queries get the same answer",
                ),
                _ => passed,
            };
            recorder.record("request", started.elapsed(), Ok(passed));
        }
        Err(BaseRequestError::Credential) => {
            recorder.skip("tls", None);
            recorder.record::<()>(
                "request",
                started.elapsed(),
                Err(Failure::new(
                    "the sealed API key is not a valid header value",
                    "seal the key again without line breaks or control characters",
                )),
            );
        }
        Err(BaseRequestError::Request(error)) => {
            if let Some(tls_error) = find_rustls_error(&error) {
                recorder.record::<()>(
                    "tls",
                    started.elapsed(),
                    Err(Failure::new(
                        format!("TLS: {tls_error}"),
                        http_tls_hint(tls_error, host),
                    )),
                );
            } else {
                if https && !error.is_timeout() {
                    recorder.skip("tls", Some("the request failed before TLS finished".into()));
                } else if https {
                    recorder.skip("tls", None);
                } else {
                    recorder.skip("tls", Some("plain http://".into()));
                }
                let failure = if error.is_timeout() {
                    Failure::new(
                        format!("no answer within {} ms", timeout.as_millis()),
                        "the API does not answer in time: raise `timeout_ms`, or check it",
                    )
                } else if error.is_redirect() {
                    Failure::new(
                        "a redirect was refused",
                        "the base URL redirects to another origin or too often: use the final \
                         URL as `base_url`",
                    )
                } else {
                    Failure::new(
                        "the request failed",
                        "the API closed the connection or does not speak HTTP on this port",
                    )
                };
                recorder.record::<()>("request", started.elapsed(), Err(failure));
            }
        }
    }
    recorder.finish()
}

fn http_tls_hint(error: &rustls::Error, host: &str) -> String {
    use rustls::{CertificateError as Cert, Error as E};
    match error {
        E::InvalidCertificate(Cert::UnknownIssuer) => {
            "the API's certificate is not signed by a CA this system trusts: add its CA to the \
             system's trust store"
                .into()
        }
        E::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            format!(
                "the API's certificate does not list `{host}`: use a name it lists in `base_url`"
            )
        }
        E::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the API's certificate has expired (or this machine's clock is wrong)".into()
        }
        _ => "the TLS handshake with the API failed; check its TLS settings".into(),
    }
}

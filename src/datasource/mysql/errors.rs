//! MySQL/MariaDB errors: driver errors mapped to the datasource's error classes, logged by
//! number and SQLSTATE only (the server's message may quote values), and what a number
//! means, for the log.

use crate::datasource::DatasourceError;

/// Maps a driver error to a class; only the server's error number and SQLSTATE are logged.
pub(super) fn classify(name: &str, error: &mysql_async::Error) -> DatasourceError {
    match error {
        mysql_async::Error::Server(server) => {
            tracing::warn!(
                datasource = %name,
                mysql_code = server.code,
                sqlstate = %server.state,
                "MySQL refused the query"
            );
            match server.code {
                1062 | 1586 => DatasourceError::Constraint { kind: "unique" },
                1451 | 1452 | 1216 | 1217 => DatasourceError::Constraint {
                    kind: "foreign_key",
                },
                1048 | 1364 => DatasourceError::Constraint { kind: "not_null" },
                3819 | 4025 => DatasourceError::Constraint { kind: "check" },
                1264 | 1265 | 1292 | 1366 | 1406 | 1367 | 1690 | 3140 | 4038 => {
                    DatasourceError::InvalidData {
                        class: "data_exception",
                    }
                }
                1205 | 1213 => DatasourceError::Retryable {
                    code: server.code.to_string(),
                },
                1317 | 3024 | 1969 => DatasourceError::Timeout,
                // The server refused the account itself (a dropped user, a wrong password, a
                // host or database it may not use): the datasource is unusable as
                // configured, as on PostgreSQL (SQLSTATE class 28).
                1044 | 1045 | 1130 | 1698 | 1862 | 3118 | 4151 => {
                    tracing::warn!(
                        datasource = %name,
                        mysql_code = server.code,
                        "MySQL refused the datasource's credentials: check the user, its password and its grants for this host and database"
                    );
                    DatasourceError::Unavailable { class: "auth" }
                }
                1142 | 1143 | 1227 => DatasourceError::Query {
                    class: "permission_denied",
                    code: server.code.to_string(),
                    meaning: mysql_meaning(server.code),
                },
                1040 | 1053 | 1203 => DatasourceError::Unavailable { class: "server" },
                _ if server.state.starts_with("42") => DatasourceError::Query {
                    class: "invalid_statement",
                    code: server.code.to_string(),
                    meaning: mysql_meaning(server.code),
                },
                _ => DatasourceError::Query {
                    class: "database_error",
                    code: server.code.to_string(),
                    meaning: mysql_meaning(server.code),
                },
            }
        }
        mysql_async::Error::Io(_) if crate::datasource::tls::find_rustls_error(error).is_some() => {
            if let Some(tls) = crate::datasource::tls::find_rustls_error(error) {
                // rustls errors name certificate problems and host names, never a value.
                tracing::warn!(datasource = %name, tls_error = %tls, "MySQL TLS handshake failed");
            }
            DatasourceError::Unavailable { class: "tls" }
        }
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            tracing::warn!(
                datasource = %name,
                "The MySQL server does not offer TLS, which this datasource requires (`tls`)"
            );
            DatasourceError::Unavailable { class: "tls" }
        }
        mysql_async::Error::Io(_) => {
            tracing::warn!(datasource = %name, "MySQL connection failure");
            DatasourceError::Unavailable { class: "connect" }
        }
        mysql_async::Error::Driver(_) => {
            // Handshake-level trouble (TLS not offered, auth plugin, protocol): the
            // datasource cannot be used as configured.
            tracing::warn!(datasource = %name, "MySQL driver error");
            DatasourceError::Unavailable {
                class: "mysql_driver",
            }
        }
        _ => {
            tracing::warn!(datasource = %name, "MySQL client error");
            DatasourceError::Internal {
                class: "mysql_client",
            }
        }
    }
}

/// What a MySQL/MariaDB error number means, in a few words, for the server log (the
/// server's own message may quote values). "" for numbers not listed.
pub(crate) fn mysql_meaning(code: u16) -> &'static str {
    match code {
        1064 => "syntax error",
        1146 => "the table or view does not exist",
        1054 => "a column does not exist",
        1052 => "a column name is ambiguous: qualify it with its table",
        1305 => "the function or procedure does not exist",
        1142 => "the datasource's user lacks a table privilege (GRANT it what the query needs)",
        1143 => "the datasource's user lacks a column privilege",
        1227 => "the datasource's user lacks a privilege this statement needs",
        1049 => "the database does not exist",
        1109 => "unknown table in the statement",
        1241 => "an operand should contain one column",
        1242 => "a subquery returned more than one row",
        1210 => "wrong arguments to a statement",
        _ => "",
    }
}

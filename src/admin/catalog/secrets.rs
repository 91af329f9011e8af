//! Write-only datasource secrets on the catalog API.
//!
//! A secret is sent once and never returned. In a request body a secret field holds one of
//! `{"plaintext": "..."}` (sealed here for its owner and field), `{"sealed": "enc:v1:..."}`
//! (stored as sent; it must open for this datasource and field), `{"reference":
//! "env:NAME"}` (read from the environment or a file when the pool is built, only where
//! `SLUICE_SECRET_REFERENCES` allows it; shown back, since it names no secret), `{"set": true}` (keep the
//! stored value: what a `GET` shows, so a read-modify-write round trip keeps the secret) or
//! `null`/absent (no secret). A bare string is refused unless it is a sealed value, so a
//! plaintext is never stored by mistake. In a response a secret field is
//! `{"set": true, "updated_at": "..."}`: never the value, never the ciphertext.
//!
//! Nothing here logs, and no error quotes a value: errors name the field.

use serde_json::{Map, Value};

use crate::config::is_reference;
use crate::http::Problem;
use crate::spec::DatasourceSpec;
use crate::vault::{Keyring, Owner, is_sealed};

/// Where each secret lives in a datasource's JSON, and the field name its seal is bound to
/// (`datasource/<name>/<field>`).
const SECRET_POINTERS: &[(&str, &str)] = &[
    ("/password", "password"),
    ("/tls_client_key", "tls_client_key"),
    ("/auth/bearer/token", "bearer"),
    ("/auth/basic/password", "basic_password"),
    ("/auth/api_key/value", "api_key"),
];

/// A datasource as the API shows it: its JSON with each secret replaced by
/// `{"set": true, "updated_at": ...}` (`updated_at` from `updated(field)`).
pub fn view(spec: &DatasourceSpec, updated: impl Fn(&str) -> Option<String>) -> Value {
    let mut value = serde_json::to_value(spec).expect("specs serialise");
    for (pointer, field) in SECRET_POINTERS {
        if let Some(slot) = value.pointer_mut(pointer)
            && slot.is_string()
        {
            let mut shown = Map::new();
            shown.insert("set".into(), Value::Bool(true));
            // A reference names where the secret is read from, not the secret: shown.
            if let Some(reference) = slot.as_str().filter(|v| is_reference(v)) {
                shown.insert("reference".into(), Value::String(reference.to_string()));
            }
            if let Some(at) = updated(field) {
                shown.insert("updated_at".into(), Value::String(at));
            }
            *slot = Value::Object(shown);
        }
    }
    value
}

/// The sealed value of each secret field of `spec`, by field name.
pub fn sealed_values(spec: &DatasourceSpec) -> Vec<(&'static str, String)> {
    spec.secret_fields()
        .into_iter()
        .filter_map(|(field, value)| value.map(|v| (field, v.to_string())))
        .collect()
}

/// Turns the secret fields of a datasource body into stored (sealed) values, in place:
/// plaintext sealed for `name`, `{"set": true}` replaced by the value in `current` (the
/// stored datasource's JSON, secrets sealed). Every problem is returned, each at its field.
pub fn seal_input(
    body: &mut Value,
    name: &str,
    current: Option<&Value>,
    key: &Keyring,
) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    for (pointer, field) in SECRET_POINTERS {
        let Some(slot) = body.pointer_mut(pointer) else {
            continue;
        };
        let location = pointer.trim_start_matches('/').replace('/', ".");
        let problem = |message: &str| Problem {
            location: location.clone(),
            message: message.to_string(),
        };
        let stored = match std::mem::take(slot) {
            Value::String(text) if is_sealed(&text) => Ok(text),
            Value::String(_) => Err(problem(
                "a secret is sent as {\"plaintext\": \"...\"} or {\"sealed\": \"enc:v1:...\"}, \
                 never as a bare string",
            )),
            Value::Object(mut form) => {
                let kind = form.keys().next().cloned();
                match (form.len(), kind.as_deref()) {
                    (1, Some("plaintext")) => match form.remove("plaintext") {
                        Some(Value::String(plaintext)) if !plaintext.is_empty() => {
                            match Owner::datasource(name, field) {
                                Ok(owner) => Ok(key.seal(&owner, &plaintext)),
                                Err(error) => Err(problem(&error.to_string())),
                            }
                        }
                        _ => Err(problem("`plaintext` must be a non-empty string")),
                    },
                    (1, Some("reference")) => match form.remove("reference") {
                        Some(Value::String(reference)) if is_reference(&reference) => Ok(reference),
                        _ => Err(problem(
                            "`reference` must be env:NAME or file:/path (allowed by SLUICE_SECRET_REFERENCES)",
                        )),
                    },
                    (1, Some("sealed")) => match form.remove("sealed") {
                        Some(Value::String(sealed)) if is_sealed(&sealed) => Ok(sealed),
                        _ => Err(problem(
                            "`sealed` must be a value from `sluice secret seal` (enc:v1:...)",
                        )),
                    },
                    (_, _) if form.get("set") == Some(&Value::Bool(true)) => {
                        match current
                            .and_then(|c| c.pointer(pointer))
                            .and_then(Value::as_str)
                        {
                            Some(sealed) => Ok(sealed.to_string()),
                            None => Err(problem(
                                "{\"set\": true} keeps the stored secret, but this datasource has none here; send {\"plaintext\": ...}",
                            )),
                        }
                    }
                    _ => Err(problem(
                        "a secret is one of {\"plaintext\": ...}, {\"sealed\": ...}, {\"reference\": ...} or {\"set\": true} (keep the stored one)",
                    )),
                }
            }
            Value::Null => {
                // `null` means no secret: drop the member so the spec reads it as unset.
                remove_pointer(body, pointer);
                continue;
            }
            _ => Err(problem(
                "a secret must be an object such as {\"plaintext\": \"...\"}",
            )),
        };
        match stored {
            Ok(sealed) => {
                if let Some(slot) = body.pointer_mut(pointer) {
                    *slot = Value::String(sealed);
                }
            }
            Err(problem) => problems.push(problem),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Removes the member at `pointer` (a path of object keys) from `value`.
fn remove_pointer(value: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let parent = if parent.is_empty() {
        Some(value)
    } else {
        value.pointer_mut(parent)
    };
    if let Some(Value::Object(map)) = parent {
        map.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> Keyring {
        Keyring::new(
            crate::vault::InstanceKey::derive("a long enough test password", "test salt value")
                .unwrap(),
        )
    }

    #[test]
    fn plaintext_is_sealed_for_its_owner_and_never_shown() {
        let key = key();
        let mut body = json!({"kind": "postgres", "host": "db", "database": "d", "user": "u",
            "password": {"plaintext": "canary-pw-1"}});
        seal_input(&mut body, "main", None, &key).unwrap();
        let sealed = body["password"].as_str().unwrap().to_string();
        assert!(is_sealed(&sealed) && !sealed.contains("canary"));
        let owner = Owner::datasource("main", "password").unwrap();
        assert_eq!(key.open(&owner, &sealed).unwrap().expose(), "canary-pw-1");
        // Bound to its datasource: another datasource's owner does not open it.
        let other = Owner::datasource("other", "password").unwrap();
        assert!(key.open(&other, &sealed).is_err());
        let spec: DatasourceSpec = serde_json::from_value(body).unwrap();
        let shown = view(&spec, |_| Some("2026-01-01T00:00:00Z".into()));
        assert_eq!(
            shown["password"],
            json!({"set": true, "updated_at": "2026-01-01T00:00:00Z"})
        );
        assert!(!shown.to_string().contains(&sealed));
    }

    #[test]
    fn set_keeps_the_stored_value_and_bad_forms_are_named() {
        let key = key();
        let current = json!({"auth": {"bearer": {"token": "enc:v1:0011223344556677:AAAA"}}});
        let mut body = json!({"kind": "http", "base_url": "https://x.example",
            "auth": {"bearer": {"token": {"set": true, "updated_at": "x"}}}});
        seal_input(&mut body, "api", Some(&current), &key).unwrap();
        assert_eq!(
            body["auth"]["bearer"]["token"],
            "enc:v1:0011223344556677:AAAA"
        );

        let mut bare = json!({"password": "hunter2-canary", "tls_client_key": {"set": true}});
        let problems = seal_input(&mut bare, "db", None, &key).unwrap_err();
        let text = serde_json::to_string(&problems).unwrap();
        assert!(!text.contains("hunter2-canary"), "{text}");
        assert_eq!(problems.len(), 2);
        assert_eq!(problems[0].location, "password");
        assert_eq!(problems[1].location, "tls_client_key");

        let mut null = json!({"password": null, "user": "u"});
        seal_input(&mut null, "db", None, &key).unwrap();
        assert_eq!(null, json!({"user": "u"}));
    }
}

//! Keeps an HTTP datasource's credentials out of what goes back to the client. An upstream
//! may echo its request (error pages quote the URL, debug endpoints echo headers), and the
//! request carried the credential: in the query string, in `Authorization`, in a header.
//! Every form the credential can take on the wire is replaced with `[redacted]` in the
//! forwarded headers and in the body before the reply leaves the datasource.
//!
//! The forms of each secret: as sent, percent-encoded (form encoding with `+` for a space,
//! RFC 3986 with `%20`, and every non-alphanumeric byte encoded; upper- and lower-case hex), base64 (standard and URL-safe, padded and
//! not) of the secret and, for basic auth, of `user:password`. A JSON body is also searched
//! after decoding its strings (keys and values), so an echo written with JSON escapes
//! (`\/`, `\u002d`) is found too; it is then re-encoded.
//!
//! Must never log a secret or a body, and never let a reply through unsearched.

use aho_corasick::AhoCorasick;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What replaces a credential.
pub const REDACTED: &str = "[redacted]";

/// Unreserved characters (RFC 3986) stay as they are; everything else is encoded.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The searcher for one datasource's credentials (`None` when it has none).
pub struct Scrubber {
    forms: AhoCorasick,
}

impl Scrubber {
    /// Builds the searcher for `secrets` (each as sent) and, for basic auth, the
    /// `user:password` pair that is sent base64-encoded.
    pub fn new<'a>(
        secrets: impl IntoIterator<Item = &'a str>,
        basic_pair: Option<String>,
    ) -> Option<Scrubber> {
        let mut forms: Vec<String> = Vec::new();
        for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
            forms.extend(encoded_forms(secret));
        }
        if let Some(pair) = basic_pair {
            forms.extend(base64_forms(pair.as_bytes()));
        }
        forms.retain(|form| !form.is_empty());
        forms.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        forms.dedup();
        if forms.is_empty() {
            return None;
        }
        let forms = AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&forms)
            .expect("literal patterns always build");
        Some(Scrubber { forms })
    }

    /// A header value with every credential form replaced.
    pub fn text(&self, value: &str) -> String {
        self.forms
            .replace_all(value, &vec![REDACTED; self.forms.patterns_len()])
    }

    /// The body with every credential form replaced: in its bytes, and for JSON also in
    /// its decoded strings.
    pub fn body(&self, body: Vec<u8>, is_json: bool) -> Vec<u8> {
        let replacements = vec![REDACTED.as_bytes(); self.forms.patterns_len()];
        let body = if self.forms.is_match(&body) {
            self.forms.replace_all_bytes(&body, &replacements)
        } else {
            body
        };
        // Without a backslash a JSON text has no escapes: its bytes were all searched.
        if !is_json || !body.contains(&b'\\') {
            return body;
        }
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else {
            // Not JSON after all: it goes back as a string, and its bytes were searched.
            return body;
        };
        if self.json(&mut value) {
            serde_json::to_vec(&value).expect("a JSON value serialises")
        } else {
            body
        }
    }

    /// Replaces credential forms in every string (and key) of `value`; true if any was.
    fn json(&self, value: &mut serde_json::Value) -> bool {
        use serde_json::Value;
        match value {
            Value::String(text) => {
                if self.forms.is_match(text.as_str()) {
                    *text = self.text(text);
                    true
                } else {
                    false
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.json(item) | changed),
            Value::Object(members) => {
                let mut changed = false;
                if members.keys().any(|key| self.forms.is_match(key.as_str())) {
                    let old = std::mem::take(members);
                    for (key, item) in old {
                        members.insert(self.text(&key), item);
                    }
                    changed = true;
                }
                members
                    .values_mut()
                    .fold(changed, |changed, item| self.json(item) | changed)
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }
}

/// A secret as sent and in each encoding it may take on the wire.
fn encoded_forms(secret: &str) -> Vec<String> {
    let strict = utf8_percent_encode(secret, STRICT).to_string();
    let every = utf8_percent_encode(secret, NON_ALPHANUMERIC).to_string();
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let mut forms = vec![secret.to_string()];
    for encoded in [strict, every, form] {
        forms.push(encoded.to_ascii_lowercase_hex());
        forms.push(encoded);
    }
    forms.extend(base64_forms(secret.as_bytes()));
    forms
}

fn base64_forms(bytes: &[u8]) -> Vec<String> {
    vec![
        STANDARD.encode(bytes),
        STANDARD_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        URL_SAFE_NO_PAD.encode(bytes),
    ]
}

trait LowercaseHex {
    /// The percent-encoded text with its `%XX` escapes in lower-case hex.
    fn to_ascii_lowercase_hex(&self) -> String;
}

impl LowercaseHex for String {
    fn to_ascii_lowercase_hex(&self) -> String {
        let mut out = String::with_capacity(self.len());
        let mut escape = 0;
        for c in self.chars() {
            if c == '%' {
                escape = 2;
                out.push(c);
            } else if escape > 0 {
                escape -= 1;
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "k+y/5e=2c 9b&7a-é";

    fn scrubber() -> Scrubber {
        Scrubber::new([KEY], Some(format!("svc:{KEY}"))).expect("forms")
    }

    #[test]
    fn every_wire_form_of_a_secret_is_redacted() {
        let s = scrubber();
        let strict = utf8_percent_encode(KEY, STRICT).to_string();
        let form: String = url::form_urlencoded::byte_serialize(KEY.as_bytes()).collect();
        for form in [
            KEY.to_string(),
            strict.clone(),
            strict.to_ascii_lowercase_hex(),
            form.clone(),
            form.to_ascii_lowercase_hex(),
            STANDARD.encode(KEY),
            URL_SAFE_NO_PAD.encode(KEY),
            STANDARD.encode(format!("svc:{KEY}")),
            format!("Basic {}", STANDARD.encode(format!("svc:{KEY}"))),
        ] {
            let text = format!("GET /x?api_key={form}&q=1 failed");
            let scrubbed = s.text(&text);
            assert!(scrubbed.contains(REDACTED), "{form}: {scrubbed}");
            assert!(!scrubbed.contains(&form), "{form}: {scrubbed}");
            let body = s.body(text.clone().into_bytes(), false);
            assert_eq!(String::from_utf8(body).unwrap(), scrubbed);
        }
    }

    #[test]
    fn json_escapes_do_not_hide_a_secret() {
        let s = Scrubber::new(["tok-3f9a/1c77"], None).expect("forms");
        let body =
            br#"{"url":"http:\/\/h\/x?t=tok\u002d3f9a\/1c77","tok\u002d3f9a\/1c77":[1,"a"]}"#;
        let out = s.body(body.to_vec(), true);
        let value: serde_json::Value = serde_json::from_slice(&out).expect("still JSON");
        let text = value.to_string();
        assert!(!text.contains("tok-3f9a/1c77"), "{text}");
        assert_eq!(value["url"], "http://h/x?t=[redacted]");
        assert_eq!(value["[redacted]"], serde_json::json!([1, "a"]));
    }

    #[test]
    fn bodies_without_a_secret_come_back_unchanged() {
        let s = scrubber();
        let body = br#"{"a" : "x\"y", "b": [1, 2.50]}"#.to_vec();
        assert_eq!(s.body(body.clone(), true), body);
        assert_eq!(s.body(b"plain".to_vec(), false), b"plain");
        assert!(Scrubber::new([""], None).is_none());
    }
}

//! Credential detection in catalog text a visitor or an editor can read: provider key
//! patterns (the common gitleaks-class rules) and a Shannon-entropy check for long random
//! tokens, as detect-secrets does. Pure: text in, what it looks like out. A match is
//! reported by rule and place, never by its value.

use std::sync::LazyLock;

use regex::Regex;

/// One kind of credential: its rule name and pattern.
struct Pattern {
    name: &'static str,
    regex: Regex,
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let rules: &[(&str, &str)] = &[
        (
            "aws-access-key-id",
            r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
        ),
        ("github-token", r"\bgh[pousr]_[A-Za-z0-9]{36,255}\b"),
        (
            "github-fine-grained-token",
            r"\bgithub_pat_[A-Za-z0-9_]{82}\b",
        ),
        ("gitlab-token", r"\bglpat-[A-Za-z0-9_\-]{20}\b"),
        (
            "slack-token",
            r"\bxox[abposr]-(?:[0-9A-Za-z]+-){1,3}[0-9A-Za-z]{10,}\b",
        ),
        (
            "stripe-secret-key",
            r"\b(?:sk|rk)_live_[0-9A-Za-z]{24,99}\b",
        ),
        ("google-api-key", r"\bAIza[0-9A-Za-z_\-]{35}\b"),
        (
            "openai-api-key",
            r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,}\b",
        ),
        (
            "sendgrid-api-key",
            r"\bSG\.[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43}\b",
        ),
        ("twilio-api-key", r"\bSK[0-9a-f]{32}\b"),
        ("sluice-api-key", r"\bslk_[A-Za-z0-9_\-]{20,}\b"),
        ("private-key", r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
        (
            "jwt",
            r"\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\b",
        ),
        (
            "url-with-password",
            r"[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@",
        ),
    ];
    rules
        .iter()
        .map(|(name, pattern)| Pattern {
            name,
            regex: Regex::new(pattern).expect("the secret patterns compile"),
        })
        .collect()
});

/// Shortest token the entropy check looks at, and the entropy (bits per character) above
/// which a token of base64 or hex characters counts as random.
const ENTROPY_MIN_LEN: usize = 24;
const BASE64_ENTROPY: f64 = 4.5;
const HEX_ENTROPY: f64 = 3.0;

/// The rule a credential-looking piece of `text` matches, if any: a provider pattern first,
/// else `high-entropy-string`. Bindings (`{{ ... }}`) are not values and are skipped.
pub fn find(text: &str) -> Option<&'static str> {
    if let Some(pattern) = PATTERNS.iter().find(|p| p.regex.is_match(text)) {
        return Some(pattern.name);
    }
    let without_bindings = strip_bindings(text);
    without_bindings
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-')))
        .any(high_entropy)
        .then_some("high-entropy-string")
}

fn strip_bindings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        out.push(' ');
        match rest[open..].find("}}") {
            Some(close) => rest = &rest[open + close + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// A long token of random-looking characters: high Shannon entropy for its alphabet, and a
/// mix of character classes (so `aaaaaaaa...` or an ordinary word does not count).
fn high_entropy(token: &str) -> bool {
    if token.len() < ENTROPY_MIN_LEN {
        return false;
    }
    let hex = token.bytes().all(|b| b.is_ascii_hexdigit());
    let limit = if hex { HEX_ENTROPY } else { BASE64_ENTROPY };
    let classes = [
        token.bytes().any(|b| b.is_ascii_lowercase()),
        token.bytes().any(|b| b.is_ascii_uppercase()),
        token.bytes().any(|b| b.is_ascii_digit()),
    ]
    .iter()
    .filter(|c| **c)
    .count();
    (hex || classes >= 3) && entropy(token) > limit
}

fn entropy(text: &str) -> f64 {
    let mut counts = [0usize; 256];
    for b in text.bytes() {
        counts[b as usize] += 1;
    }
    let len = text.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f64 / len;
            -p * p.log2()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Realistic fake keys, one per pattern (made up for this test, valid for nothing).
    #[test]
    fn each_provider_pattern_finds_its_key() {
        let cases = [
            ("aws-access-key-id", "AKIAZ7QX4PL2M9RT8WQE"),
            ("github-token", "ghp_8fK2Lm9QxR4tV7wZ1bN3cD5eG6hJ0kPq2sT4"),
            ("gitlab-token", "glpat-x7Yk2Lm9Qr4Tv8Wz1Bn3"),
            (
                "slack-token",
                "xoxb-2816473921-7364829103-aB7cD9eF1gH3iJ5kL",
            ),
            ("stripe-secret-key", "sk_live_51Hx7KqLm9Qr4Tv8Wz1Bn3Cd5"),
            ("google-api-key", "AIzaSyB7xK2m9QrT4v8Wz1Bn3Cd5Ef6Gh0JkLpQ"),
            (
                "sendgrid-api-key",
                "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",
            ),
            ("twilio-api-key", "SK3f9a1c7e2b8d4f6a0c5e9b1d7f3a2c8e"),
            ("sluice-api-key", "slk_Xy7kL2m9QrT4v8Wz1Bn3Cd5E"),
            ("private-key", "-----BEGIN RSA PRIVATE KEY-----\nMIIE..."),
            (
                "jwt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            ),
            (
                "url-with-password",
                "postgres://app:hunter2hunter2@db.example.com/shop",
            ),
        ];
        for (rule, key) in cases {
            assert_eq!(find(&format!("token: {key} end")), Some(rule), "{key}");
        }
        assert_eq!(
            find("Authorization: Bearer 9fK2Lm7QxR4tV7wZ1bN3cD5eG6hJ0kPq2sT4uV"),
            Some("high-entropy-string")
        );
        assert_eq!(
            find("a3f9c1e7b2d84f6a0c5e9b1d7f3a2c8e"),
            Some("high-entropy-string")
        );
    }

    /// Look-alikes that must not match: placeholders, words, ids, bindings, URLs without a
    /// password, short or low-entropy strings.
    #[test]
    fn look_alikes_do_not_match() {
        for text in [
            "SELECT id, name FROM orders WHERE customer = {{ params.customer }}",
            "AKIA-not-a-key",
            "akiaz7qx4pl2m9rt8wqe",
            "ghp_short",
            "sk_test_placeholder",
            "https://api.example.com/v1/orders?limit=10",
            "postgres://db.example.com/shop",
            "Bearer {{ params.token_that_is_very_long_but_a_binding }}",
            "550e8400-e29b-41d4-a716-446655440000",
            "application/x-www-form-urlencoded; charset=utf-8",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "thisIsAVeryLongCamelCaseIdentifierName",
            "The quarterly revenue report for every region and product line",
            "YOUR_API_KEY_HERE",
            "/v1/customers/{{ params.id }}/orders",
        ] {
            assert_eq!(find(text), None, "{text}");
        }
    }
}

//! Time-based one-time passwords (RFC 6238) for MFA, and the `otpauth://` URI that
//! authenticator apps scan.
//!
//! Owns the parameters every authenticator app implements (HMAC-SHA-1, 6 digits, 30-second
//! steps), secret generation and its base32 form, code generation and verification with one
//! step of clock skew either side.
//!
//! Invariants:
//! - Codes are compared in constant time, and [`verify`] returns the time step it matched so
//!   that the caller can refuse any step at or before the last one accepted (no replay).
//! - This module never logs, and never puts a secret or a code into an error or a message.
//!   It keeps no state: the last accepted step lives with the account in the store.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};
use rand::TryRng;
use rand::rngs::SysRng;
use subtle::{Choice, ConstantTimeEq};
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Digits in a code.
pub const DIGITS: usize = 6;
/// Seconds in a time step.
pub const STEP_SECS: u64 = 30;

/// Bytes in a new secret: 160 bits, the length RFC 4226 section 4 recommends.
const SECRET_BYTES: usize = 20;
/// RFC 4226's minimum secret length (128 bits); [`verify`] refuses anything shorter, so a
/// blank or truncated secret in the store can never accept a guessable code.
const MIN_SECRET_BYTES: usize = 16;
/// Input longer than this is not a code with spaces in it, and is refused before any work.
const MAX_CODE_INPUT: usize = 32;

/// Everything but RFC 3986's unreserved characters is percent-encoded in the label and the
/// issuer parameter: spaces, `@`, `:`, `&`, `=`, `?`, `/`, `#` and non-ASCII included.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A fresh random secret of 20 bytes from the operating system.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    SysRng
        .try_fill_bytes(&mut secret)
        .expect("the operating system's random source is readable");
    secret
}

/// The secret in RFC 4648 base32 without padding (upper case), as the otpauth URI carries it
/// and as users type it into an app that cannot scan.
pub fn encode_secret(secret: &[u8]) -> String {
    Secret::from(secret).to_base32()
}

/// Decodes a base32 secret. Case, spaces and trailing `=` padding are ignored (apps and
/// people write secrets both ways); anything else outside the alphabet, or an empty result,
/// is `None`.
pub fn decode_secret(encoded: &str) -> Option<Vec<u8>> {
    let mut normalized: String = encoded
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let trimmed_len = normalized.trim_end_matches('=').len();
    normalized.truncate(trimmed_len);
    let decoded = Secret::try_from_base32(normalized).ok()?;
    (!decoded.is_empty()).then(|| decoded.to_vec())
}

/// The `otpauth://totp/...` URI for enrolment (shown as a QR code):
/// `otpauth://totp/Issuer:account?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30`.
///
/// Issuer and account are percent-encoded (a space as `%20`, `@` as `%40`, `:` as `%3A`).
/// Apps decode the label and then split it at its first colon, so a colon in the account is
/// harmless. A colon in the issuer would move that split, so such an issuer is left out of
/// the label and carried only in the `issuer` parameter, which the Key URI format makes
/// authoritative anyway. An empty issuer is left out entirely.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let account = utf8_percent_encode(account, URI_COMPONENT);
    let encoded_issuer = utf8_percent_encode(issuer, URI_COMPONENT);
    let label = if issuer.is_empty() || issuer.contains(':') {
        account.to_string()
    } else {
        format!("{encoded_issuer}:{account}")
    };
    let issuer_param = if issuer.is_empty() {
        String::new()
    } else {
        format!("&issuer={encoded_issuer}")
    };
    format!(
        "otpauth://totp/{label}?secret={}{issuer_param}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        encode_secret(secret)
    )
}

/// The otpauth URI as a QR code: a standalone SVG document (black modules on white, with
/// the quiet zone, at least 200 px wide) for an `<img src="data:image/svg+xml,...">` or a
/// file; error correction level M, as authenticator apps expect.
pub fn qr_svg(otpauth_uri: &str) -> String {
    // An otpauth URI is at most a few hundred bytes (an email is at most 254 characters),
    // far below a QR code's capacity (2,331 bytes at level M), so encoding cannot fail;
    // were it to, the answer carries no picture and the URI and secret still enrol.
    QrCode::with_error_correction_level(otpauth_uri.as_bytes(), EcLevel::M)
        .map(|code| {
            code.render::<svg::Color<'_>>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build()
        })
        .unwrap_or_default()
}

/// The RFC 6238 time step a Unix time falls in (floor division, so it is defined for any
/// `i64`).
pub fn step_of(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS as i64)
}

/// The 6-digit code for the step containing `unix_secs`. Times before the epoch are treated
/// as the epoch, since RFC 6238 defines no negative steps.
pub fn code_at(secret: &[u8], unix_secs: i64) -> String {
    code_for_step(secret, step_of(unix_secs).max(0))
}

/// Checks a code typed by the user at time `unix_secs`, allowing one step of clock skew
/// either side. Returns the step the code belongs to, which the caller must store and compare
/// against the next attempt: refusing any step `<=` the last accepted one defeats replay.
///
/// Spaces are ignored ("123 456"); anything else that is not exactly 6 ASCII digits, and any
/// secret shorter than 128 bits, gives `None`.
pub fn verify(secret: &[u8], code: &str, unix_secs: i64) -> Option<i64> {
    if secret.len() < MIN_SECRET_BYTES || code.len() > MAX_CODE_INPUT {
        return None;
    }
    let code: String = code.chars().filter(|&c| c != ' ').collect();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_of(unix_secs);
    // All three candidates are computed and compared whatever the input, so the time taken
    // does not say which (if any) matched. The current step wins a (1 in 10^6) tie.
    let mut matched = None;
    for step in [
        current.checked_add(1),
        current.checked_sub(1),
        Some(current),
    ]
    .into_iter()
    .flatten()
    .filter(|&step| step >= 0)
    {
        let expected = code_for_step(secret, step);
        let equal: Choice = expected.as_bytes().ct_eq(code.as_bytes());
        if bool::from(equal) {
            matched = Some(step);
        }
    }
    matched
}

/// The code for a non-negative step, via totp-rs.
fn code_for_step(secret: &[u8], step: i64) -> String {
    // Steps come from `step_of`, so `step * 30` fits; saturate rather than trust that.
    let time = u64::try_from(step).unwrap_or(0).saturating_mul(STEP_SECS);
    // `build_noncompliant` so that a short secret produces a code instead of an error;
    // `verify` refuses short secrets itself. Skew is unused: this module does its own window.
    // totp-rs's `zeroize` feature wipes its copy of the secret when `totp` is dropped.
    let totp: Totp = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_skew(0)
        .with_step_duration(STEP_SECS)
        .with_secret(secret)
        .build_noncompliant();
    totp.generate(time).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rasterises the SVG [`qr_svg`] makes (one `M{x} {y}h{w}v{h}...` rectangle per run of
    /// dark modules) and decodes it with an independent QR reader (rqrr).
    fn decode_qr_svg(svg: &str) -> String {
        let number = |text: &str, after: &str| -> usize {
            let start = text.find(after).unwrap() + after.len();
            let digits: String = text[start..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap()
        };
        let (width, height) = (number(svg, "width=\""), number(svg, "height=\""));
        let path = &svg[svg.find(" d=\"").unwrap() + 4..];
        let path = &path[..path.find('"').unwrap()];
        let mut dark = vec![false; width * height];
        for rect in path.split('M').filter(|r| !r.is_empty()) {
            let fields: Vec<usize> = rect
                .split(|c: char| !c.is_ascii_digit())
                .filter(|f| !f.is_empty())
                .map(|f| f.parse().unwrap())
                .collect();
            let (x, y, w, h) = (fields[0], fields[1], fields[2], fields[3]);
            for row in y..y + h {
                for column in x..x + w {
                    dark[row * width + column] = true;
                }
            }
        }
        let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| {
            if dark[y * width + x] { 0 } else { 255 }
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the picture");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_qr_code_decodes_to_the_otpauth_uri() {
        let uri = otpauth_uri(
            b"12345678901234567890",
            "Sluice",
            "a.very.long+address@example.com",
        );
        let svg = qr_svg(&uri);
        assert!(svg.contains("<svg") && svg.ends_with("</svg>"), "{svg}");
        assert!(!svg.contains("<script"), "a picture, nothing active");
        assert_eq!(decode_qr_svg(&svg), uri);
        // The longest email there can be still fits.
        let long = format!("{}@{}.example", "a".repeat(64), "b".repeat(180));
        let uri = otpauth_uri(b"12345678901234567890", "Sluice", &long);
        assert_eq!(decode_qr_svg(&qr_svg(&uri)), uri);
    }

    const SEED_SHA1: &[u8] = b"12345678901234567890";
    const SEED_SHA256: &[u8] = b"12345678901234567890123456789012";
    const SEED_SHA512: &[u8] = b"1234567890123456789012345678901234567890123456789012345678901234";

    /// RFC 6238 Appendix B: time, then the 8-digit codes for SHA-1, SHA-256, SHA-512.
    const RFC_VECTORS: [(u64, &str, &str, &str); 6] = [
        (59, "94287082", "46119246", "90693936"),
        (1111111109, "07081804", "68084774", "25091201"),
        (1111111111, "14050471", "67062674", "99943326"),
        (1234567890, "89005924", "91819424", "93441116"),
        (2000000000, "69279037", "90698825", "38618901"),
        (20000000000, "65353130", "77737706", "47863826"),
    ];

    fn rfc_totp(algorithm: Algorithm, seed: &[u8]) -> Totp {
        Builder::new()
            .with_algorithm(algorithm)
            .with_digits(8)
            .with_skew(1)
            .with_step_duration(30)
            .with_secret(seed)
            .build()
            .unwrap()
    }

    #[test]
    fn rfc_6238_appendix_b_vectors() {
        let sha1 = rfc_totp(Algorithm::SHA1, SEED_SHA1);
        let sha256 = rfc_totp(Algorithm::SHA256, SEED_SHA256);
        let sha512 = rfc_totp(Algorithm::SHA512, SEED_SHA512);
        for (time, want1, want256, want512) in RFC_VECTORS {
            assert_eq!(sha1.generate(time).to_string(), want1, "SHA1 at {time}");
            assert_eq!(
                sha256.generate(time).to_string(),
                want256,
                "SHA256 at {time}"
            );
            assert_eq!(
                sha512.generate(time).to_string(),
                want512,
                "SHA512 at {time}"
            );
        }
    }

    #[test]
    fn code_at_is_the_last_six_digits_of_the_rfc_sha1_vector() {
        for (time, want, _, _) in RFC_VECTORS {
            let time = i64::try_from(time).unwrap();
            assert_eq!(code_at(SEED_SHA1, time), want[2..], "at {time}");
        }
    }

    #[test]
    fn steps_are_thirty_seconds_and_floor_negative_times() {
        let cases = [
            (0, 0),
            (29, 0),
            (30, 1),
            (59, 1),
            (60, 2),
            (-1, -1),
            (-30, -1),
            (-31, -2),
        ];
        for (time, step) in cases {
            assert_eq!(step_of(time), step, "{time}");
        }
        assert_eq!(code_at(SEED_SHA1, -100), code_at(SEED_SHA1, 0));
    }

    #[test]
    fn verify_accepts_one_step_of_skew_and_refuses_two() {
        let secret = new_secret();
        let now = 1_700_000_015; // mid-step
        let step = step_of(now);
        let cases = [
            (-2, None),
            (-1, Some(step - 1)),
            (0, Some(step)),
            (1, Some(step + 1)),
            (2, None),
        ];
        for (offset, expected) in cases {
            let code = code_at(&secret, now + offset * 30);
            assert_eq!(verify(&secret, &code, now), expected, "offset {offset}");
        }
    }

    #[test]
    fn verify_accepts_spaces_and_refuses_malformed_codes() {
        let secret = SEED_SHA1;
        let now = 1_234_567_890;
        let code = code_at(secret, now);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(verify(secret, &spaced, now), Some(step_of(now)));
        assert_eq!(
            verify(secret, &format!(" {code} "), now),
            Some(step_of(now))
        );

        let too_long = format!("{code}0");
        let with_dash = format!("{}-{}", &code[..3], &code[3..]);
        let tabbed = format!("{}\t{}", &code[..3], &code[3..]);
        let malformed = [
            "",
            "12345",
            too_long.as_str(),
            with_dash.as_str(),
            tabbed.as_str(),
            "abcdef",
            "12345a",
            "+12345",
            "-12345",
            "１２３４５６",
            &code[..5],
            &" ".repeat(100),
        ];
        for input in malformed {
            assert_eq!(verify(secret, input, now), None, "{input:?}");
        }
    }

    #[test]
    fn verify_refuses_short_secrets_and_wrong_codes() {
        let now = 1_234_567_890;
        let short = &SEED_SHA1[..15];
        assert_eq!(verify(short, &code_at(short, now), now), None);
        assert_eq!(verify(&[], &code_at(&[], now), now), None);

        // Another secret's code for the same moment (these two differ, checked first).
        let theirs = code_at(SEED_SHA256, now);
        assert_ne!(theirs, code_at(SEED_SHA1, now));
        assert_eq!(verify(SEED_SHA1, &theirs, now), None);
    }

    #[test]
    fn verify_near_the_epoch_does_not_underflow() {
        let secret = SEED_SHA1;
        assert_eq!(verify(secret, &code_at(secret, 0), 0), Some(0));
        assert_eq!(verify(secret, &code_at(secret, 0), 10), Some(0));
        assert_eq!(verify(secret, "287082", 59), Some(1));
        // Far-out times neither panic nor match the epoch's code by accident.
        let _ = verify(secret, "000000", i64::MAX);
        let _ = verify(secret, "000000", i64::MIN);
    }

    #[test]
    fn secrets_are_random_and_round_trip_through_base32() {
        let a = new_secret();
        let b = new_secret();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        let encoded = encode_secret(&a);
        assert_eq!(encoded.len(), 32);
        assert!(
            encoded
                .bytes()
                .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
        );
        assert_eq!(decode_secret(&encoded), Some(a.clone()));
        assert_eq!(decode_secret(&encoded.to_lowercase()), Some(a.clone()));

        // RFC 4648 section 10 vector, with and without padding.
        assert_eq!(encode_secret(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            decode_secret("MZXW6YTBOI======").as_deref(),
            Some(&b"foobar"[..])
        );
        assert_eq!(
            decode_secret("mzxw 6ytb oi").as_deref(),
            Some(&b"foobar"[..])
        );
        for bad in ["", "   ", "MZXW6YTBO1", "MZXW6YTBOI!", "MZXW6YTBOÏ"] {
            assert_eq!(decode_secret(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn otpauth_uri_has_every_parameter_and_encodes_the_label() {
        let uri = otpauth_uri(b"foobar", "Sluice", "alice@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Sluice:alice%40example.com?secret=MZXW6YTBOI&issuer=Sluice\
             &algorithm=SHA1&digits=6&period=30"
        );

        let uri = otpauth_uri(b"foobar", "Acme Data & Co", "bob smith");
        assert!(
            uri.starts_with("otpauth://totp/Acme%20Data%20%26%20Co:bob%20smith?"),
            "{uri}"
        );
        assert!(uri.contains("&issuer=Acme%20Data%20%26%20Co&"), "{uri}");
    }

    #[test]
    fn otpauth_uri_parses_back_with_colons_and_odd_characters() {
        let secret = new_secret();
        let cases = [
            ("Sluice", "alice@example.com"),
            ("Acme Data", "bob smith@example.com"),
            ("Sluice", "odd:account@example.com"),
            ("Acme: Prod", "carol@example.com"),
            ("Zürich & Co?", "dave/#x=1@example.com"),
        ];
        for (issuer, account) in cases {
            let uri = otpauth_uri(&secret, issuer, account);
            // `from_url_unchecked`: totp-rs's checked constructor refuses any colon, even one
            // that is correctly encoded.
            let parsed = Totp::from_url_unchecked(&uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
            assert_eq!(parsed.issuer(), Some(issuer), "{uri}");
            assert_eq!(parsed.account_name(), account, "{uri}");
            assert_eq!(parsed.secret().as_bytes(), secret.as_slice());
            assert_eq!(
                (usize::from(parsed.digits()), parsed.step()),
                (DIGITS, STEP_SECS)
            );
            assert_eq!(parsed.algorithm(), Algorithm::SHA1);
        }
        // An issuer with a colon stays out of the label.
        let uri = otpauth_uri(&secret, "Acme: Prod", "carol@example.com");
        assert!(
            uri.starts_with("otpauth://totp/carol%40example.com?"),
            "{uri}"
        );
        assert!(uri.contains("&issuer=Acme%3A%20Prod&"), "{uri}");
    }
}

//! Small writers that append JSON tokens to a row buffer.
//!
//! Every driver encodes rows straight into bytes with these, so a row is never built as a
//! `serde_json::Value` first. The lossless mapping they serve is documented in
//! `docs/API.md` ("Result types").

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Appends `text` as a JSON string, escaped as serde_json escapes it.
pub fn string(out: &mut Vec<u8>, text: &str) {
    // Most cell text needs no escape (serde_json escapes only `"`, `\` and control
    // characters; everything else, non-ASCII included, is written as is): then it is copied
    // in one piece, byte for byte what serde_json would write.
    if !text.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
        return;
    }
    // serde_json's escaper writes into any io::Write; Vec<u8> never fails.
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

/// Appends a value whose Display form is plain ASCII needing no escapes, quoted.
pub fn quoted_display(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    use std::io::Write;
    out.push(b'"');
    write!(out, "{value}").expect("writing to a Vec cannot fail");
    out.push(b'"');
}

/// Appends an integer as a JSON number.
pub fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends a float: a number when finite, else the string `"NaN"`, `"Infinity"` or `"-Infinity"`
/// (JSON has no spelling for them).
pub fn float(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        serde_json::to_writer(&mut *out, &value).expect("writing to a Vec cannot fail");
    } else if value.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if value > 0.0 {
        out.extend_from_slice(b"\"Infinity\"");
    } else {
        out.extend_from_slice(b"\"-Infinity\"");
    }
}

/// Appends a 32-bit float by its shortest round-trip spelling.
pub fn float32(out: &mut Vec<u8>, value: f32) {
    if value.is_finite() {
        serde_json::to_writer(&mut *out, &value).expect("writing to a Vec cannot fail");
    } else {
        float(out, f64::from(value));
    }
}

/// Appends bytes as a base64 (standard alphabet, padded) JSON string.
pub fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    out.push(b'"');
    let start = out.len();
    out.resize(start + value.len().div_ceil(3) * 4, 0);
    let written = STANDARD
        .encode_slice(value, &mut out[start..])
        .expect("buffer sized for base64");
    out.truncate(start + written);
    out.push(b'"');
}

pub fn boolean(out: &mut Vec<u8>, value: bool) {
    out.extend_from_slice(if value { b"true" } else { b"false" });
}

pub fn null(out: &mut Vec<u8>) {
    out.extend_from_slice(b"null");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(
            with(|o| string(o, "a\"b\\c\n\u{0}")),
            r#""a\"b\\c\n\u0000""#
        );
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        // The copy-as-is path and the escaping path agree with serde_json for every ASCII
        // character, alone and among others, and for non-ASCII text.
        let mut samples: Vec<String> = (0u8..0x80)
            .map(|b| char::from(b).to_string())
            .chain((0u8..0x80).map(|b| format!("ab{}cd", char::from(b))))
            .collect();
        samples.extend(
            [
                "",
                "paid",
                "Zürich ✓ 日本",
                "tab\there",
                "\u{7f}",
                "quote\"s",
                "\u{2028}",
            ]
            .map(String::from),
        );
        for sample in samples {
            assert_eq!(
                with(|o| string(o, &sample)),
                serde_json::to_string(&sample).unwrap(),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn floats_without_json_spelling_become_strings() {
        assert_eq!(with(|o| float(o, 1.5)), "1.5");
        assert_eq!(with(|o| float(o, f64::NAN)), "\"NaN\"");
        assert_eq!(with(|o| float(o, f64::NEG_INFINITY)), "\"-Infinity\"");
        assert_eq!(with(|o| float32(o, 0.1)), "0.1");
    }

    #[test]
    fn bytes_are_base64() {
        assert_eq!(with(|o| bytes(o, b"\x00\xffhi")), "\"AP9oaQ==\"");
        assert_eq!(with(|o| bytes(o, b"")), "\"\"");
    }
}

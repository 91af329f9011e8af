//! Rendering a compiled HTTP template per request: each bound value encoded for where it
//! stands (percent-encoded path segment, query or form pair, checked header text, typed
//! JSON value), never spliced as raw text.

use std::fmt::Write as _;

use chrono::SecondsFormat;
use percent_encoding::utf8_percent_encode;

use super::compiler::{is_dot_segment, is_header_control};
use super::*;

impl Path {
    pub(super) fn render(&self, values: &BindValues<'_>) -> Result<String, RenderError> {
        let segments = match self {
            Path::Static(path) => return Ok(path.to_string()),
            Path::Dynamic(segments) => segments,
        };
        let mut out = String::with_capacity(64);
        let mut scratch = String::new();
        for (i, segment) in segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            let start = out.len();
            for piece in &segment.pieces {
                match piece {
                    Piece::Text(text) => out.push_str(text),
                    Piece::Bind(binding) => {
                        scratch.clear();
                        push_text(&mut scratch, &binding.source.value(values)?, binding)?;
                        out.extend(utf8_percent_encode(&scratch, SEGMENT));
                    }
                }
            }
            if let Some(binding) = &segment.binding {
                let rendered = &out[start..];
                if rendered.is_empty() {
                    return Err(binding.error(
                        "must not be empty here: an empty path segment changes the resource",
                    ));
                }
                if is_dot_segment(rendered) {
                    return Err(binding.error(
                        "must not make a path segment `.` or `..`, which URL parsers resolve",
                    ));
                }
            }
        }
        Ok(out)
    }
}

pub(super) fn render_fields(
    fields: &[Field],
    values: &BindValues<'_>,
    out: &mut Vec<(String, String)>,
) -> Result<(), RenderError> {
    for field in fields {
        match &field.value {
            Text::Fixed(text) => out.push((field.name.clone(), text.to_string())),
            Text::Whole(binding) => match binding.source.value(values)? {
                ParamValue::Null => {}
                ParamValue::Array(items) => {
                    for item in items.iter().filter(|v| **v != ParamValue::Null) {
                        let mut text = String::new();
                        push_text(&mut text, item, binding)?;
                        out.push((field.name.clone(), text));
                    }
                }
                value => {
                    let mut text = String::new();
                    push_text(&mut text, &value, binding)?;
                    out.push((field.name.clone(), text));
                }
            },
            Text::Mixed(pieces) => {
                let mut text = String::new();
                interpolate(pieces, values, Place::Text, &mut text)?;
                out.push((field.name.clone(), text));
            }
        }
    }
    Ok(())
}

pub(super) fn render_header(
    template: &Text<HeaderValue>,
    values: &BindValues<'_>,
) -> Result<Option<HeaderValue>, RenderError> {
    let (text, blame) = match template {
        Text::Fixed(value) => return Ok(Some(value.clone())),
        Text::Whole(binding) => {
            let value = binding.source.value(values)?;
            if value == ParamValue::Null {
                return Ok(None);
            }
            let mut text = String::new();
            push_header_text(&mut text, &value, binding)?;
            (text, binding)
        }
        Text::Mixed(pieces) => {
            let mut text = String::new();
            interpolate(pieces, values, Place::Header, &mut text)?;
            let blame = pieces
                .iter()
                .find_map(|p| match p {
                    Piece::Bind(b) => Some(b),
                    Piece::Text(_) => None,
                })
                .expect("a mixed template has a binding");
            (text, blame)
        }
    };
    // Every control character was refused above, so this only fails on a bug.
    HeaderValue::try_from(text)
        .map(Some)
        .map_err(|_| blame.error("does not form a valid header value"))
}

/// Appends the text of each piece; NULLs are refused (see [`Binding::required_here`]).
pub(super) fn interpolate(
    pieces: &[Piece],
    values: &BindValues<'_>,
    place: Place,
    out: &mut String,
) -> Result<(), RenderError> {
    for piece in pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Bind(binding) => {
                let value = binding.source.value(values)?;
                match place {
                    Place::Text => push_text(out, &value, binding)?,
                    Place::Header => push_header_text(out, &value, binding)?,
                }
            }
        }
    }
    Ok(())
}

pub(super) fn push_header_text(
    out: &mut String,
    value: &ParamValue,
    binding: &Binding,
) -> Result<(), RenderError> {
    let start = out.len();
    push_text(out, value, binding)?;
    if out[start..].chars().any(is_header_control) {
        return Err(
            binding.error("must not contain CR, LF, NUL or other control characters in a header")
        );
    }
    Ok(())
}

/// Appends the text form of a scalar value (see the module docs).
pub(super) fn push_text(
    out: &mut String,
    value: &ParamValue,
    binding: &Binding,
) -> Result<(), RenderError> {
    let fmt = "writing to a String cannot fail";
    match value {
        ParamValue::Null => return Err(binding.required_here()),
        ParamValue::Text(text) => out.push_str(text),
        ParamValue::Int(n) => write!(out, "{n}").expect(fmt),
        ParamValue::Bigint(n) => write!(out, "{n}").expect(fmt),
        ParamValue::Float(x) if !x.is_finite() => return Err(not_finite(binding)),
        ParamValue::Float(x) => write!(out, "{x}").expect(fmt),
        ParamValue::Numeric(digits) => out.push_str(digits),
        ParamValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        ParamValue::Uuid(uuid) => write!(out, "{}", uuid.hyphenated()).expect(fmt),
        ParamValue::Date(date) => write!(out, "{date}").expect(fmt),
        ParamValue::Timestamp(at) => out.push_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        ParamValue::Json(json) => out.push_str(&serde_json::to_string(json).expect(fmt)),
        ParamValue::Array(_) => {
            return Err(binding.error("is a list, which cannot stand here"));
        }
    }
    Ok(())
}

pub(super) fn not_finite(binding: &Binding) -> RenderError {
    binding.error("must be a finite number")
}

pub(super) fn render_json(
    parts: &[JsonPart],
    values: &BindValues<'_>,
) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::with_capacity(
        parts
            .iter()
            .map(|p| match p {
                JsonPart::Raw(raw) => raw.len(),
                _ => 16,
            })
            .sum(),
    );
    let mut scratch = String::new();
    for part in parts {
        match part {
            JsonPart::Raw(raw) => out.extend_from_slice(raw.as_bytes()),
            JsonPart::Value(binding) => {
                push_json(&mut out, &binding.source.value(values)?, binding)?;
            }
            JsonPart::Str(pieces) => {
                scratch.clear();
                interpolate(pieces, values, Place::Text, &mut scratch)?;
                push_json_string(&mut out, &scratch);
            }
        }
    }
    Ok(out)
}

/// Appends a value as a typed JSON value.
pub(super) fn push_json(
    out: &mut Vec<u8>,
    value: &ParamValue,
    binding: &Binding,
) -> Result<(), RenderError> {
    match value {
        ParamValue::Null => out.extend_from_slice(b"null"),
        ParamValue::Text(text) => push_json_string(out, text),
        ParamValue::Int(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        ParamValue::Bigint(n) => out.extend_from_slice(itoa::Buffer::new().format(*n).as_bytes()),
        ParamValue::Float(x) if !x.is_finite() => return Err(not_finite(binding)),
        ParamValue::Float(x) => {
            serde_json::to_writer(&mut *out, x).expect("a finite float serializes");
        }
        // Written from its exact decimal text, so no digit is lost to a float.
        ParamValue::Numeric(digits) if is_json_number(digits) => {
            out.extend_from_slice(digits.as_bytes());
        }
        ParamValue::Numeric(_) => return Err(binding.error("is not a plain decimal number")),
        ParamValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        ParamValue::Json(json) => {
            serde_json::to_writer(&mut *out, json).expect("a JSON value serializes");
        }
        ParamValue::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json(out, item, binding)?;
            }
            out.push(b']');
        }
        ParamValue::Uuid(_) | ParamValue::Date(_) | ParamValue::Timestamp(_) => {
            let mut text = String::new();
            push_text(&mut text, value, binding)?;
            push_json_string(out, &text);
        }
    }
    Ok(())
}

pub(super) fn push_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("a string serializes");
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`: the decimals [`ParamValue::Numeric`] holds, which are
/// also valid JSON numbers.
pub(super) fn is_json_number(text: &str) -> bool {
    let text = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && (int == "0" || !int.starts_with('0')) && frac.is_none_or(digits)
}

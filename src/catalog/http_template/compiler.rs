//! Compiling an HTTP request template: the method against the datasource's allowed
//! methods, the path (literal segments checked, bindings as whole or partial segments),
//! query and form fields, headers (no transport or credential headers), and a JSON, form or
//! text body, each binding checked against its declared param. Runs when a catalog
//! compiles.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue, Method};
use percent_encoding::percent_decode_str;

use super::*;

pub(super) struct Compiler<'a> {
    pub(super) params: &'a BTreeMap<String, ParamSpec>,
    pub(super) uses_user: bool,
}

pub(super) fn error(location: impl Into<String>, message: impl Into<String>) -> HttpTemplateError {
    HttpTemplateError {
        location: location.into(),
        message: message.into(),
    }
}

pub(super) fn compile_method(
    method: &str,
    allowed: &[Method],
) -> Result<Method, HttpTemplateError> {
    let Some(parsed) = METHODS
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(method))
    else {
        return Err(error(
            "method",
            format!("`{method}` is not supported; use GET, POST, PUT, PATCH or DELETE"),
        ));
    };
    if !allowed.contains(&parsed) {
        let names: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        return Err(error(
            "method",
            format!(
                "{parsed} is not allowed for this datasource (allowed: {}); add it to the \
                 datasource's `allowed_methods`",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ),
        ));
    }
    Ok(parsed)
}

impl Compiler<'_> {
    /// Splits `src` into literal text and bindings.
    pub(super) fn pieces(
        &mut self,
        location: &str,
        src: &str,
    ) -> Result<Vec<Piece>, HttpTemplateError> {
        let mut pieces = Vec::new();
        let mut rest = src;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].into()));
            }
            let Some(len) = rest[open + 2..].find("}}") else {
                return Err(error(
                    location,
                    "unterminated binding: `{{` needs a closing `}}`",
                ));
            };
            let path = rest[open + 2..open + 2 + len].trim();
            let binding = self
                .binding(path)
                .map_err(|message| error(location, message))?;
            pieces.push(Piece::Bind(binding));
            rest = &rest[open + 2 + len + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.into()));
        }
        Ok(pieces)
    }

    /// Parses the path inside `{{ }}`, with the SQL compiler's rules and messages, then
    /// refuses the SQL-only param types.
    pub(super) fn binding(&mut self, path: &str) -> Result<Binding, String> {
        match parse_binding_path(path, self.params)? {
            BindingSource::Param(param) => {
                let name = &param.name;
                let spec = &self.params[name];
                let (ParamType::Scalar(scalar) | ParamType::Array(scalar)) = spec.ty;
                if matches!(scalar, ScalarType::Identifier | ScalarType::Keyword) {
                    return Err(format!(
                        "param `{name}`: type `{}` is for SQL templates only (it is written \
                         into the statement); in an HTTP template declare it as `text` with an \
                         `enum` list",
                        spec.ty.name()
                    ));
                }
                Ok(Binding {
                    list: matches!(spec.ty, ParamType::Array(_)),
                    source: BindingSource::Param(param.clone()),
                })
            }
            BindingSource::User(field) => {
                self.uses_user = true;
                Ok(Binding {
                    source: BindingSource::User(field),
                    list: field == UserField::Groups,
                })
            }
            BindingSource::Claim(name) => {
                self.uses_user = true;
                Ok(Binding {
                    source: BindingSource::Claim(name),
                    list: false,
                })
            }
        }
    }

    /// Refuses a list binding among `pieces`, which stand in a place that takes one value.
    pub(super) fn scalars_only(
        &self,
        location: &str,
        pieces: &[Piece],
    ) -> Result<(), HttpTemplateError> {
        for piece in pieces {
            if let Piece::Bind(binding) = piece
                && binding.list
            {
                return Err(error(
                    location,
                    format!(
                        "`{{{{ {} }}}}` is a list, which can only be a whole query or form \
                         value (one pair per item) or a whole JSON string (a JSON array), not \
                         part of a path, a header or a longer text",
                        binding.path()
                    ),
                ));
            }
        }
        Ok(())
    }

    pub(super) fn text(&mut self, location: &str, src: &str) -> Result<Text, HttpTemplateError> {
        let mut pieces = self.pieces(location, src)?;
        Ok(match pieces.as_slice() {
            [] => Text::Fixed("".into()),
            [Piece::Text(_)] => match pieces.pop() {
                Some(Piece::Text(text)) => Text::Fixed(text),
                _ => unreachable!("matched one text piece"),
            },
            [Piece::Bind(_)] => match pieces.pop() {
                Some(Piece::Bind(binding)) => Text::Whole(binding),
                _ => unreachable!("matched one binding"),
            },
            _ => {
                self.scalars_only(location, &pieces)?;
                Text::Mixed(pieces)
            }
        })
    }

    /// A query parameter or form field: a literal name and a text template.
    pub(super) fn field(
        &mut self,
        location: &str,
        name: &str,
        template: &str,
    ) -> Result<Field, HttpTemplateError> {
        if name.is_empty() {
            return Err(error(location, "the name must not be empty"));
        }
        if name.contains("{{") {
            return Err(error(
                location,
                "names are literal: a binding can only stand in the value",
            ));
        }
        Ok(Field {
            name: name.to_string(),
            value: self.text(location, template)?,
        })
    }

    pub(super) fn path(&mut self, src: &str) -> Result<Path, HttpTemplateError> {
        const LOCATION: &str = "path";
        if !src.is_empty() && !src.starts_with('/') {
            return Err(error(
                LOCATION,
                "must be empty or start with `/` (it is appended to the datasource's base URL)",
            ));
        }
        let pieces = self.pieces(LOCATION, src)?;
        self.scalars_only(LOCATION, &pieces)?;
        let mut segments = vec![Segment {
            pieces: Vec::new(),
            binding: None,
        }];
        for piece in pieces {
            let current = segments.last_mut().expect("there is always a segment");
            match piece {
                Piece::Bind(binding) => {
                    current.binding.get_or_insert_with(|| binding.clone());
                    current.pieces.push(Piece::Bind(binding));
                }
                Piece::Text(text) => {
                    check_path_literal(&text)?;
                    for (i, part) in text.split('/').enumerate() {
                        if i > 0 {
                            segments.push(Segment {
                                pieces: Vec::new(),
                                binding: None,
                            });
                        }
                        if !part.is_empty() {
                            let current = segments.last_mut().expect("just pushed");
                            current.pieces.push(Piece::Text(part.into()));
                        }
                    }
                }
            }
        }
        // Segments without bindings are known now; those with bindings are checked per render.
        let last = segments.len() - 1;
        for (i, segment) in segments.iter().enumerate() {
            if segment.binding.is_some() {
                continue;
            }
            let text: String = segment
                .pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => &**t,
                    Piece::Bind(_) => "",
                })
                .collect();
            if is_dot_segment(&text) {
                return Err(error(
                    LOCATION,
                    format!(
                        "segment `{text}` would be removed by URL normalisation; write the path \
                         without it"
                    ),
                ));
            }
            // The empty segment before the leading `/` and a trailing `/` are fine; `//` is
            // not, because it reads as an authority when resolved as a reference.
            if text.is_empty() && i != 0 && i != last {
                return Err(error(LOCATION, "empty segment (`//`)"));
            }
        }
        if segments.iter().all(|s| s.binding.is_none()) {
            return Ok(Path::Static(src.into()));
        }
        Ok(Path::Dynamic(segments))
    }

    pub(super) fn headers(
        &mut self,
        headers: &BTreeMap<String, String>,
    ) -> Result<Vec<(HeaderName, Text<HeaderValue>)>, HttpTemplateError> {
        let mut compiled: Vec<(HeaderName, Text<HeaderValue>)> = Vec::with_capacity(headers.len());
        for (written, template) in headers {
            let location = format!("headers.{written}");
            let name = HeaderName::from_bytes(written.as_bytes()).map_err(|_| {
                error(
                    &location,
                    "not a valid header name (letters, digits and `!#$%&'*+-.^_`|~` only)",
                )
            })?;
            if let Some(reason) = forbidden_header(&name) {
                return Err(error(&location, reason));
            }
            if compiled.iter().any(|(n, _)| *n == name) {
                return Err(error(
                    &location,
                    "given twice (header names are case-insensitive)",
                ));
            }
            let value = match self.text(&location, template)? {
                Text::Fixed(text) => {
                    if let Some(c) = text.chars().find(|&c| is_header_control(c)) {
                        return Err(error(
                            &location,
                            format!(
                                "the value holds the control character {c:?}, which a header \
                                 cannot carry"
                            ),
                        ));
                    }
                    let value = HeaderValue::try_from(text.into_string())
                        .map_err(|_| error(&location, "not a valid header value"))?;
                    Text::Fixed(value)
                }
                Text::Whole(binding) => {
                    self.scalars_only(&location, &[Piece::Bind(binding.clone())])?;
                    Text::Whole(binding)
                }
                Text::Mixed(pieces) => {
                    for piece in &pieces {
                        if let Piece::Text(text) = piece
                            && let Some(c) = text.chars().find(|&c| is_header_control(c))
                        {
                            return Err(error(
                                &location,
                                format!(
                                    "the value holds the control character {c:?}, which a \
                                     header cannot carry"
                                ),
                            ));
                        }
                    }
                    Text::Mixed(pieces)
                }
            };
            compiled.push((name, value));
        }
        Ok(compiled)
    }

    pub(super) fn body(&mut self, body: &HttpBodySpec) -> Result<Body, HttpTemplateError> {
        match body {
            HttpBodySpec::Json(document) => {
                let mut json = JsonBuilder::default();
                self.json(document, "body", &mut json)?;
                Ok(Body::Json(json.finish()))
            }
            HttpBodySpec::Form(fields) => fields
                .iter()
                .map(|(name, template)| self.field(&format!("body.{name}"), name, template))
                .collect::<Result<_, _>>()
                .map(Body::Form),
            HttpBodySpec::Text(text) => {
                let pieces = self.pieces("body", text)?;
                self.scalars_only("body", &pieces)?;
                Ok(Body::Text(pieces))
            }
        }
    }

    pub(super) fn json(
        &mut self,
        value: &serde_json::Value,
        location: &str,
        out: &mut JsonBuilder,
    ) -> Result<(), HttpTemplateError> {
        use serde_json::Value;
        match value {
            Value::String(s) if s.contains("{{") => {
                let mut pieces = self.pieces(location, s)?;
                if let [Piece::Bind(_)] = pieces.as_slice() {
                    let Some(Piece::Bind(binding)) = pieces.pop() else {
                        unreachable!("matched one binding")
                    };
                    out.push(JsonPart::Value(binding));
                } else {
                    self.scalars_only(location, &pieces)?;
                    out.push(JsonPart::Str(pieces));
                }
            }
            Value::Array(items) => {
                out.raw.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.raw.push(',');
                    }
                    self.json(item, &format!("{location}[{i}]"), out)?;
                }
                out.raw.push(']');
            }
            Value::Object(members) => {
                out.raw.push('{');
                for (i, (key, member)) in members.iter().enumerate() {
                    let location = format!("{location}.{key}");
                    if key.contains("{{") {
                        return Err(error(
                            location,
                            "object keys are literal: a binding can only stand in a value",
                        ));
                    }
                    if i > 0 {
                        out.raw.push(',');
                    }
                    out.raw.push_str(&json_string(key));
                    out.raw.push(':');
                    self.json(member, &location, out)?;
                }
                out.raw.push('}');
            }
            literal => out
                .raw
                .push_str(&serde_json::to_string(literal).expect("a JSON value serializes")),
        }
        Ok(())
    }
}

/// Collects the parts of a JSON body, merging adjacent literal text.
#[derive(Default)]
pub(super) struct JsonBuilder {
    raw: String,
    parts: Vec<JsonPart>,
}

impl JsonBuilder {
    pub(super) fn push(&mut self, part: JsonPart) {
        if !self.raw.is_empty() {
            let raw = std::mem::take(&mut self.raw);
            self.parts.push(JsonPart::Raw(raw.into_boxed_str()));
        }
        self.parts.push(part);
    }

    pub(super) fn finish(mut self) -> Vec<JsonPart> {
        if !self.raw.is_empty() {
            self.parts.push(JsonPart::Raw(self.raw.into_boxed_str()));
        }
        self.parts
    }
}

pub(super) fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Checks literal path text: only characters that a URL parser keeps as they are.
pub(super) fn check_path_literal(text: &str) -> Result<(), HttpTemplateError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        // RFC 3986 `pchar` (unreserved, sub-delims, `:` and `@`) and `/`; `%` is checked below.
        let ok = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if ok {
            i += 1;
            continue;
        }
        if b == b'%' {
            if bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
            {
                i += 3;
                continue;
            }
            return Err(error(
                "path",
                "`%` must start a percent-encoded byte such as `%20` (write `%25` for a `%`)",
            ));
        }
        let message = match b {
            b'?' => "`?` is not allowed in the path; put query parameters under `query`".into(),
            b'#' => "`#` is not allowed in the path (a fragment is never sent)".into(),
            _ => {
                let c = text[i..].chars().next().expect("i is a char boundary");
                format!(
                    "{c:?} is not allowed in the path as written; percent-encode it (`%20` for \
                     a space)"
                )
            }
        };
        return Err(error("path", message));
    }
    Ok(())
}

/// A segment URL parsers remove or resolve: `.` or `..`, in any percent-spelling.
pub(super) fn is_dot_segment(segment: &str) -> bool {
    segment.len() <= 6
        && matches!(
            &*percent_decode_str(segment).collect::<Vec<u8>>(),
            b"." | b".."
        )
}

/// Why a template may not set this header, if it may not.
pub(super) fn forbidden_header(name: &HeaderName) -> Option<&'static str> {
    let name = name.as_str();
    if name == "authorization" {
        return Some(
            "`Authorization` comes from the datasource's credentials (`auth`), never from a \
             query template",
        );
    }
    if name.starts_with("proxy-") {
        return Some("`Proxy-*` headers are for proxies and cannot be set by a query template");
    }
    const CLIENT: [&str; 8] = [
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
    ];
    CLIENT.contains(&name).then_some(
        "this header frames or routes the request and is set by the HTTP client, not by a \
         query template",
    )
}

/// A character a header value cannot carry: every control character but TAB.
pub(super) fn is_header_control(c: char) -> bool {
    c.is_control() && c != '\t'
}

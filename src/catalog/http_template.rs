//! HTTP request template compiler.
//!
//! Owns the turning of a stored [`HttpRequestSpec`] (method, path, query parameters, headers
//! and a JSON, form or text body, each with `{{ params.NAME }}` / `{{ user.FIELD }}`
//! bindings) into a [`CompiledHttp`] when the catalog is saved, and the per-request rendering
//! of that into a [`RenderedHttp`]. Pure: no IO, no logging, no global state. It never sees
//! the datasource's base URL or credentials; the HTTP datasource appends the path to the
//! base URL, encodes the query pairs and adds the credentials at send time.
//!
//! Bindings use the same syntax, messages and value lookup as the SQL compiler
//! (`catalog::template`), and each is encoded for where it stands (docs/CATALOG.md):
//!
//! - **path**: the value's text is percent-encoded as one path segment component (everything
//!   but `A-Z a-z 0-9 - . _ ~`), so a `/`, `?`, `#`, `%` or `\` in a value cannot change the
//!   path; a segment that would end up `.` or `..` (in any percent-spelling) or empty is
//!   refused, because URL parsers remove or merge such segments.
//! - **query** and **form** values: plain text pairs, encoded later by the URL or form
//!   serializer. A value that is exactly one binding is left out when NULL and repeated once
//!   per item for a list.
//! - **headers**: text; a value holding CR, LF, NUL or any other control character but TAB is
//!   refused. Framing, hop-by-hop, proxy and `Authorization` headers cannot be set here.
//! - **JSON body**: a JSON string that is exactly one binding becomes the typed JSON value
//!   (never spliced text); text around a binding is interpolated inside the JSON string and
//!   escaped by the serializer, so a value holding `"` or `}` stays inside that string.
//! - **text body**: bindings interpolated as text.
//!
//! A NULL anywhere else (inside the path, or mixed with text) is a render error, and so is a
//! list anywhere but a whole query, form or JSON value (that one is refused at compile time).
//! Params of type `identifier` and `keyword` are SQL-only and refused here.
//!
//! Text form of a value: text as is; integers and numerics in decimal; floats in the shortest
//! decimal that reads back the same (no exponent; NaN and infinities refused); `true`/`false`;
//! hyphenated lower-case UUIDs; `YYYY-MM-DD` dates; RFC 3339 timestamps in UTC with `Z`;
//! JSON as compact JSON text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::SecondsFormat;
use http::{HeaderName, HeaderValue, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::catalog::binding::{
    BindValues, BindingSource, RenderError, UserField, parse_binding_path, path_of,
};
use crate::spec::{HttpBodySpec, HttpRequestSpec, ParamSpec, ParamType, ScalarType};
use crate::statement::{ParamValue, RenderedBody, RenderedHttp};

/// What a bound value is percent-encoded against in a path: everything but RFC 3986
/// unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The methods a template may use.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// A compile error: where in the request template (`method`, `path`, `query.q`,
/// `headers.X-Trace`, `body`, `body.items[0]`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct HttpTemplateError {
    pub location: String,
    pub message: String,
}

/// A compiled request template.
#[derive(Debug, Clone)]
pub struct CompiledHttp {
    method: Method,
    path: Path,
    query: Vec<Field>,
    headers: Vec<(HeaderName, Text<HeaderValue>)>,
    body: Option<Body>,
    uses_user: bool,
}

/// Compiles `spec`; `params` are the declared params (already checked by `catalog::params`)
/// and `allowed_methods` the methods the datasource allows.
pub fn compile_http(
    spec: &HttpRequestSpec,
    params: &BTreeMap<String, ParamSpec>,
    allowed_methods: &[Method],
) -> Result<CompiledHttp, HttpTemplateError> {
    let mut compiler = Compiler {
        params,
        uses_user: false,
    };
    let method = compile_method(&spec.method, allowed_methods)?;
    let path = compiler.path(&spec.path)?;
    let query = spec
        .query
        .iter()
        .map(|(name, template)| compiler.field(&format!("query.{name}"), name, template))
        .collect::<Result<_, _>>()?;
    let headers = compiler.headers(&spec.headers)?;
    let body = match &spec.body {
        None => None,
        Some(_) if matches!(method, Method::GET | Method::DELETE) => {
            return Err(error(
                "body",
                format!("a {method} request cannot have a body; use POST, PUT or PATCH"),
            ));
        }
        Some(body) => Some(compiler.body(body)?),
    };
    Ok(CompiledHttp {
        method,
        path,
        query,
        headers,
        body,
        uses_user: compiler.uses_user,
    })
}

impl CompiledHttp {
    /// Whether any binding reads `{{ user.* }}` (such a query needs a signed-in caller).
    pub fn uses_user(&self) -> bool {
        self.uses_user
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Produces the request for these values. A value the caller may not send where it
    /// stands (a path segment `..`, a CR in a header, a NULL inside the path) is a
    /// [`RenderError`] naming the param. As for SQL, `user.*` without a signed-in caller
    /// renders as NULL (and `user.groups` as an empty list).
    pub fn render(&self, values: &BindValues<'_>) -> Result<RenderedHttp, RenderError> {
        let path = self.path.render(values)?;
        let mut query = Vec::with_capacity(self.query.len());
        render_fields(&self.query, values, &mut query)?;
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, template) in &self.headers {
            if let Some(value) = render_header(template, values)? {
                headers.push((name.clone(), value));
            }
        }
        let body = match &self.body {
            None => None,
            Some(Body::Json(parts)) => Some(RenderedBody::Json(render_json(parts, values)?)),
            Some(Body::Form(fields)) => {
                let mut pairs = Vec::with_capacity(fields.len());
                render_fields(fields, values, &mut pairs)?;
                Some(RenderedBody::Form(pairs))
            }
            Some(Body::Text(text)) => {
                let mut out = String::new();
                interpolate(text, values, Place::Text, &mut out)?;
                Some(RenderedBody::Text(out))
            }
        };
        Ok(RenderedHttp {
            method: self.method.clone(),
            path,
            query,
            headers,
            body,
        })
    }
}

/// One binding, resolved against the declared params.
#[derive(Debug, Clone)]
struct Binding {
    source: BindingSource,
    /// Whether its value is a list (`array<T>` params, `user.groups`).
    list: bool,
}

impl Binding {
    /// The name a [`RenderError`] reports, as the SQL compiler does: `customer`, `user.id`.
    fn name(&self) -> String {
        self.source.name()
    }

    /// How it is written in a template: `params.customer`, `user.id`.
    fn path(&self) -> String {
        path_of(&self.source)
    }

    fn error(&self, message: impl Into<String>) -> RenderError {
        RenderError {
            param: self.name(),
            message: message.into(),
        }
    }

    fn required_here(&self) -> RenderError {
        self.error(
            "is required here: a null value can only leave out a query parameter, form field or \
             header whose whole value is this binding",
        )
    }
}

/// A piece of a template string.
#[derive(Debug, Clone)]
enum Piece {
    Text(Box<str>),
    Bind(Binding),
}

/// A text template, classified once so that rendering does no needless work.
#[derive(Debug, Clone)]
enum Text<F = Box<str>> {
    /// No bindings: the value, ready to use.
    Fixed(F),
    /// Exactly one binding and nothing else: a NULL leaves the pair out, and (in query and
    /// form values) a list gives one pair per item.
    Whole(Binding),
    /// Bindings mixed with text; never a list.
    Mixed(Vec<Piece>),
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    value: Text,
}

#[derive(Debug, Clone)]
enum Path {
    /// No bindings: the path as written.
    Static(Box<str>),
    /// The segments between `/`s; the first is the empty one before the leading `/`.
    Dynamic(Vec<Segment>),
}

#[derive(Debug, Clone)]
struct Segment {
    pieces: Vec<Piece>,
    /// The first binding in the segment, reported when the rendered segment is refused.
    binding: Option<Binding>,
}

#[derive(Debug, Clone)]
enum Body {
    /// The document as pre-serialized JSON text interleaved with the bound values.
    Json(Vec<JsonPart>),
    Form(Vec<Field>),
    Text(Vec<Piece>),
}

#[derive(Debug, Clone)]
enum JsonPart {
    /// Serialized JSON written as is.
    Raw(Box<str>),
    /// A string that was exactly one binding: the typed value.
    Value(Binding),
    /// A string mixing text and bindings: interpolated, then serialized as one JSON string.
    Str(Vec<Piece>),
}

/// Where interpolated text goes, for the checks that apply there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Text,
    Header,
}

struct Compiler<'a> {
    params: &'a BTreeMap<String, ParamSpec>,
    uses_user: bool,
}

fn error(location: impl Into<String>, message: impl Into<String>) -> HttpTemplateError {
    HttpTemplateError {
        location: location.into(),
        message: message.into(),
    }
}

fn compile_method(method: &str, allowed: &[Method]) -> Result<Method, HttpTemplateError> {
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
    fn pieces(&mut self, location: &str, src: &str) -> Result<Vec<Piece>, HttpTemplateError> {
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
    fn binding(&mut self, path: &str) -> Result<Binding, String> {
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
        }
    }

    /// Refuses a list binding among `pieces`, which stand in a place that takes one value.
    fn scalars_only(&self, location: &str, pieces: &[Piece]) -> Result<(), HttpTemplateError> {
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

    fn text(&mut self, location: &str, src: &str) -> Result<Text, HttpTemplateError> {
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
    fn field(
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

    fn path(&mut self, src: &str) -> Result<Path, HttpTemplateError> {
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

    fn headers(
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

    fn body(&mut self, body: &HttpBodySpec) -> Result<Body, HttpTemplateError> {
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

    fn json(
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
struct JsonBuilder {
    raw: String,
    parts: Vec<JsonPart>,
}

impl JsonBuilder {
    fn push(&mut self, part: JsonPart) {
        if !self.raw.is_empty() {
            let raw = std::mem::take(&mut self.raw);
            self.parts.push(JsonPart::Raw(raw.into_boxed_str()));
        }
        self.parts.push(part);
    }

    fn finish(mut self) -> Vec<JsonPart> {
        if !self.raw.is_empty() {
            self.parts.push(JsonPart::Raw(self.raw.into_boxed_str()));
        }
        self.parts
    }
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

/// Checks literal path text: only characters that a URL parser keeps as they are.
fn check_path_literal(text: &str) -> Result<(), HttpTemplateError> {
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
fn is_dot_segment(segment: &str) -> bool {
    segment.len() <= 6
        && matches!(
            &*percent_decode_str(segment).collect::<Vec<u8>>(),
            b"." | b".."
        )
}

/// Why a template may not set this header, if it may not.
fn forbidden_header(name: &HeaderName) -> Option<&'static str> {
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
fn is_header_control(c: char) -> bool {
    c.is_control() && c != '\t'
}

impl Path {
    fn render(&self, values: &BindValues<'_>) -> Result<String, RenderError> {
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

fn render_fields(
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

fn render_header(
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
fn interpolate(
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

fn push_header_text(
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
fn push_text(out: &mut String, value: &ParamValue, binding: &Binding) -> Result<(), RenderError> {
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

fn not_finite(binding: &Binding) -> RenderError {
    binding.error("must be a finite number")
}

fn render_json(parts: &[JsonPart], values: &BindValues<'_>) -> Result<Vec<u8>, RenderError> {
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
fn push_json(out: &mut Vec<u8>, value: &ParamValue, binding: &Binding) -> Result<(), RenderError> {
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

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(out, text).expect("a string serializes");
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?`: the decimals [`ParamValue::Numeric`] holds, which are
/// also valid JSON numbers.
fn is_json_number(text: &str) -> bool {
    let text = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match text.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(int) && (int == "0" || !int.starts_with('0')) && frac.is_none_or(digits)
}

#[cfg(test)]
mod tests;

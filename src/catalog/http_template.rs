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

mod compiler;
mod render;

use compiler::{Compiler, compile_method, error};
use render::{interpolate, render_fields, render_header, render_json};

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

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

#[cfg(test)]
mod tests;

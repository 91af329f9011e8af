//! The SQL template compiler proper: a lexer that walks the template the way the target
//! database lexes it (string literals, quoted identifiers, dollar-quoting, comments), and
//! the compiler that writes the fixed statement as it goes: placeholders for value
//! bindings, pre-quoted choices for closed-list params, and a refusal (with line and column)
//! for a binding inside a literal or comment, a hand-written placeholder, or a second
//! statement. Pure: no IO.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::{Arg, Choice, CompiledSql, Part, Sql, TemplateError};
use crate::catalog::binding::{BindingSource, UserField, parse_binding_path, path_of};
use crate::spec::{ParamSpec, ParamType, ScalarType};
use crate::statement::Dialect;

/// What a lexed span of the template is, for refusing a `{{` found inside it.
#[derive(Debug, Clone, Copy)]
enum Context {
    String,
    Identifier,
    DollarQuoted,
    Comment,
}

impl Context {
    fn refusal(self, dialect: Dialect) -> &'static str {
        match (self, dialect) {
            (Context::String, Dialect::MySql) => {
                "binding inside a string literal (any `{{` there is refused); bind the whole \
                 value instead: `name LIKE {{ params.pattern }}` or \
                 `CONCAT('%', {{ params.q }}, '%')`"
            }
            (Context::String, _) => {
                "binding inside a string literal (any `{{` there is refused); bind the whole \
                 value instead: `name LIKE {{ params.pattern }}` or \
                 `'%' || {{ params.q }} || '%'`"
            }
            (Context::Identifier, _) => {
                "binding inside a quoted identifier; to choose a name at request time, declare \
                 a param of type `identifier` with an `enum` list and write it unquoted: \
                 `ORDER BY {{ params.sort }}`"
            }
            (Context::DollarQuoted, _) => {
                "binding inside a dollar-quoted string, whose body is sent as written; bind \
                 the value outside it, for a function as an argument: `SELECT f({{ params.x }})`"
            }
            (Context::Comment, _) => {
                "binding inside a comment (any `{{` there is refused, so that a commented-out \
                 binding is never taken for a live one); delete it or move it out of the comment"
            }
        }
    }
}

/// How a quoted token ends.
#[derive(Debug, Clone, Copy)]
struct Quote {
    open_len: usize,
    close: u8,
    /// A doubled closing character stands for itself (`''`, `""`, ``` `` ```).
    doubled: bool,
    /// A backslash escapes the next character (PostgreSQL `E'...'`, MySQL strings).
    backslash: bool,
    context: Context,
}

impl Quote {
    const fn new(close: u8, backslash: bool, context: Context) -> Quote {
        Quote {
            open_len: 1,
            close,
            doubled: true,
            backslash,
            context,
        }
    }
}

/// A significant code token, remembered to recognise `IN (` before a binding.
#[derive(Debug, Clone, Copy)]
enum Sig {
    Word(usize, usize),
    Punct(u8),
    Other,
}

/// The compiled pieces, built while lexing.
#[derive(Default)]
struct Output {
    /// Fixed text not yet closed into a `Part::Text`.
    text: String,
    /// Template offset up to which text has been copied.
    copied: usize,
    parts: Vec<Part>,
    args: Vec<Arg>,
    lists: usize,
    uses_user: bool,
}

impl Output {
    fn copy_to(&mut self, src: &str, offset: usize) {
        self.text.push_str(&src[self.copied..offset]);
        self.copied = offset;
    }

    fn push_part(&mut self, part: Part) {
        if !self.text.is_empty() {
            let text = std::mem::take(&mut self.text);
            self.parts.push(Part::Text(text.into_boxed_str()));
        }
        self.parts.push(part);
    }
}

/// How a binding is written, decided from its source and declared type.
enum Shape {
    Value,
    Array,
    Chosen(Vec<Choice>),
}

pub(super) struct Compiler<'a> {
    src: &'a str,
    bytes: &'a [u8],
    dialect: Dialect,
    params: &'a BTreeMap<String, ParamSpec>,
    pos: usize,
    /// The last two significant code tokens, oldest first.
    recent: [Sig; 2],
    saw_code: bool,
    /// Offset of the `;` that ended the statement, once seen.
    statement_end: Option<usize>,
    out: Output,
}

impl<'a> Compiler<'a> {
    pub(super) fn new(
        template: &'a str,
        dialect: Dialect,
        params: &'a BTreeMap<String, ParamSpec>,
    ) -> Compiler<'a> {
        Compiler {
            src: template,
            bytes: template.as_bytes(),
            dialect,
            params,
            pos: 0,
            recent: [Sig::Other; 2],
            saw_code: false,
            statement_end: None,
            out: Output::default(),
        }
    }
}

impl Compiler<'_> {
    pub(super) fn run(mut self) -> Result<CompiledSql, TemplateError> {
        while let Some(&b) = self.bytes.get(self.pos) {
            let start = self.pos;
            if b.is_ascii_whitespace() {
                self.pos += 1;
                continue;
            }
            if self.comment(start)? {
                continue;
            }
            if let Some(semi) = self.statement_end {
                return Err(self.error(
                    semi,
                    "one statement per query: a `;` may only end the template",
                ));
            }
            if b == b';' {
                self.statement_end = Some(start);
                self.pos += 1;
                continue;
            }
            self.saw_code = true;
            let sig = self.code(start)?;
            self.recent = [self.recent[1], sig];
        }
        self.finish()
    }

    fn finish(mut self) -> Result<CompiledSql, TemplateError> {
        let end = self.statement_end.unwrap_or(self.src.len());
        if !self.saw_code {
            return Err(self.error(end, "the template holds no SQL statement"));
        }
        // The trailing `;` and whatever follows it (whitespace, comments) are dropped, and
        // so is trailing whitespace: none of it changes the statement.
        self.out.copy_to(self.src, end);
        let out = &mut self.out;
        out.text.truncate(out.text.trim_end().len());
        let sql = if out.parts.is_empty() {
            Sql::Static(Arc::from(std::mem::take(&mut out.text)))
        } else {
            if !out.text.is_empty() {
                let text = std::mem::take(&mut out.text);
                out.parts.push(Part::Text(text.into_boxed_str()));
            }
            let parts = std::mem::take(&mut out.parts);
            let fixed_len = parts
                .iter()
                .map(|p| match p {
                    Part::Text(t) => t.len(),
                    _ => 0,
                })
                .sum();
            Sql::Dynamic { parts, fixed_len }
        };
        let mut args = std::mem::take(&mut out.args);
        // Mark each param's last binding: its value is moved into the statement there.
        let mut seen = std::collections::HashSet::new();
        for arg in args.iter_mut().rev() {
            if let BindingSource::Param(param) = &arg.source {
                arg.last_use = seen.insert(param.slot);
            }
        }
        let uses_user = out.uses_user;
        let types = match self.dialect {
            Dialect::Postgres => args
                .iter()
                .map(|arg| declared_type(self.params, &arg.source))
                .collect(),
            Dialect::MySql | Dialect::Sqlite => Arc::from([]),
        };
        Ok(CompiledSql {
            sql,
            args,
            types,
            uses_user,
        })
    }

    /// Lexes one code token at `start` and says what it was.
    fn code(&mut self, start: usize) -> Result<Sig, TemplateError> {
        let b = self.bytes[start];
        if self.src[start..].starts_with("{{") {
            self.binding(start)?;
            return Ok(Sig::Other);
        }
        if let Some(quote) = self.quote_at(b) {
            self.quoted(start, quote)?;
            return Ok(Sig::Other);
        }
        if let Some(end) = self.placeholder_end(start) {
            let text = &self.src[start..end];
            return Err(self.error(
                start,
                format!(
                    "raw placeholder `{text}`; write a binding such as `{{{{ params.NAME }}}}` \
                     or `{{{{ user.id }}}}` and Sluice writes the placeholders itself"
                ),
            ));
        }
        if self.dialect == Dialect::Postgres
            && b == b'$'
            && let Some(tag_end) = self.dollar_tag_end(start)
        {
            self.dollar_quoted(start, tag_end)?;
            return Ok(Sig::Other);
        }
        if self.is_word_start(b) {
            let end = self.word_end(start + 1);
            if self.dialect == Dialect::Postgres
                && end == start + 1
                && b.eq_ignore_ascii_case(&b'e')
                && self.bytes.get(end) == Some(&b'\'')
            {
                let quote = Quote {
                    open_len: 2,
                    ..Quote::new(b'\'', true, Context::String)
                };
                self.quoted(start, quote)?;
                return Ok(Sig::Other);
            }
            self.pos = end;
            return Ok(Sig::Word(start, end));
        }
        // Anything else is ASCII punctuation: bytes >= 0x80 start words.
        self.pos = start + 1;
        Ok(Sig::Punct(b))
    }

    /// Consumes a comment at `start`, if there is one.
    fn comment(&mut self, start: usize) -> Result<bool, TemplateError> {
        let at = |i: usize| self.bytes.get(i).copied();
        let dash_dash = at(start) == Some(b'-') && at(start + 1) == Some(b'-');
        let line = match self.dialect {
            // MySQL reads `--` as a comment only before whitespace or a control character;
            // `5--1` is five minus minus one.
            Dialect::MySql => {
                (dash_dash && at(start + 2).is_none_or(|c| c <= b' ')) || at(start) == Some(b'#')
            }
            Dialect::Postgres | Dialect::Sqlite => dash_dash,
        };
        let end = if line {
            self.src[start..]
                .find('\n')
                .map_or(self.src.len(), |i| start + i)
        } else if at(start) == Some(b'/') && at(start + 1) == Some(b'*') {
            // Only PostgreSQL nests block comments; MySQL's `/*! ... */` executable comments
            // are treated as comments all the same.
            let nests = self.dialect == Dialect::Postgres;
            let mut depth = 1;
            let mut i = start + 2;
            while depth > 0 {
                match (at(i), at(i + 1)) {
                    (None, _) => {
                        return Err(
                            self.error(start, "unterminated block comment: close it with `*/`")
                        );
                    }
                    (Some(b'*'), Some(b'/')) => {
                        depth -= 1;
                        i += 2;
                    }
                    (Some(b'/'), Some(b'*')) if nests => {
                        depth += 1;
                        i += 2;
                    }
                    _ => i += 1,
                }
            }
            i
        } else {
            return Ok(false);
        };
        self.refuse_braces(start, end, Context::Comment)?;
        self.pos = end;
        Ok(true)
    }

    fn quote_at(&self, b: u8) -> Option<Quote> {
        use Context::{Identifier, String};
        let quote = match (self.dialect, b) {
            (_, b'\'') => Quote::new(b'\'', self.dialect == Dialect::MySql, String),
            (Dialect::MySql, b'"') => Quote::new(b'"', true, String),
            (_, b'"') => Quote::new(b'"', false, Identifier),
            (Dialect::MySql | Dialect::Sqlite, b'`') => Quote::new(b'`', false, Identifier),
            // SQLite's `[name]` has no escape: it ends at the first `]`.
            (Dialect::Sqlite, b'[') => Quote {
                doubled: false,
                ..Quote::new(b']', false, Identifier)
            },
            _ => return None,
        };
        Some(quote)
    }

    fn quoted(&mut self, start: usize, quote: Quote) -> Result<(), TemplateError> {
        let mut i = start + quote.open_len;
        loop {
            match self.bytes.get(i) {
                None => {
                    let what = match quote.context {
                        Context::Identifier => "quoted identifier",
                        _ => "string literal",
                    };
                    let close = quote.close as char;
                    return Err(self.error(
                        start,
                        format!("unterminated {what}: close it with `{close}`"),
                    ));
                }
                Some(b'\\') if quote.backslash => i += 2,
                Some(&c) if c == quote.close => {
                    if quote.doubled && self.bytes.get(i + 1) == Some(&quote.close) {
                        i += 2;
                    } else {
                        i += 1;
                        break;
                    }
                }
                Some(_) => i += 1,
            }
        }
        self.refuse_braces(start, i, quote.context)?;
        self.pos = i;
        Ok(())
    }

    /// For a PostgreSQL `$` at `start`, the end of a `$tag$` / `$$` opening delimiter.
    fn dollar_tag_end(&self, start: usize) -> Option<usize> {
        let mut i = start + 1;
        // A tag is an identifier without `$` that does not start with a digit.
        if self
            .bytes
            .get(i)
            .is_some_and(|&c| c.is_ascii_alphabetic() || c == b'_' || c >= 0x80)
        {
            i = start + 2;
            while self
                .bytes
                .get(i)
                .is_some_and(|&c| c != b'$' && is_word_char(c))
            {
                i += 1;
            }
        }
        (self.bytes.get(i) == Some(&b'$')).then_some(i + 1)
    }

    fn dollar_quoted(&mut self, start: usize, tag_end: usize) -> Result<(), TemplateError> {
        let tag = &self.src[start..tag_end];
        let Some(len) = self.src[tag_end..].find(tag) else {
            return Err(self.error(
                start,
                format!("unterminated dollar-quoted string: close it with `{tag}`"),
            ));
        };
        let end = tag_end + len + tag.len();
        self.refuse_braces(start, end, Context::DollarQuoted)?;
        self.pos = end;
        Ok(())
    }

    /// The end of a hand-written placeholder at `start`, if there is one.
    fn placeholder_end(&self, start: usize) -> Option<usize> {
        let b = self.bytes[start];
        let next = self.bytes.get(start + 1).copied();
        let digits_end = |from: usize| {
            from + self.bytes[from..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
        };
        match self.dialect {
            // `?` is a jsonb operator in PostgreSQL, so only `$1` is a placeholder there.
            Dialect::Postgres => (b == b'$' && next.is_some_and(|c| c.is_ascii_digit()))
                .then(|| digits_end(start + 1)),
            Dialect::MySql => (b == b'?').then_some(start + 1),
            // SQLite also accepts `#name`, undocumented but in its tokenizer.
            Dialect::Sqlite => match b {
                b'?' => Some(digits_end(start + 1)),
                b':' | b'@' | b'$' | b'#' if next.is_some_and(is_word_char) => {
                    Some(self.word_end(start + 1))
                }
                _ => None,
            },
        }
    }

    fn is_word_start(&self, b: u8) -> bool {
        // MySQL lets `$` start a name; PostgreSQL and SQLite only allow it inside one.
        (is_word_char(b) && b != b'$') || (b == b'$' && self.dialect == Dialect::MySql)
    }

    fn word_end(&self, from: usize) -> usize {
        from + self.bytes[from..]
            .iter()
            .take_while(|&&c| is_word_char(c))
            .count()
    }

    /// Refuses any `{{` in `src[start..end]`, a span lexed as `context`.
    fn refuse_braces(
        &self,
        start: usize,
        end: usize,
        context: Context,
    ) -> Result<(), TemplateError> {
        match self.src[start..end].find("{{") {
            Some(i) => Err(self.error(start + i, context.refusal(self.dialect))),
            None => Ok(()),
        }
    }

    fn binding(&mut self, start: usize) -> Result<(), TemplateError> {
        let Some(len) = self.src[start + 2..].find("}}") else {
            return Err(self.error(start, "unterminated binding: `{{` needs a closing `}}`"));
        };
        let end = start + 2 + len + 2;
        let source = self.binding_source(start, self.src[start + 2..end - 2].trim())?;
        // A binding glued to a word or a quote would merge with it once written out: `x$1` is
        // one name in PostgreSQL, `{{ .. }}0` would read as `$10`, `"a""col"` as one name.
        let before = start.checked_sub(1).map(|i| self.bytes[i]);
        let after = self.bytes.get(end).copied();
        if let Some(c) = before
            .filter(|&c| touches(c))
            .or(after.filter(|&c| touches(c)))
        {
            let c = if c.is_ascii() { c as char } else { '\u{FFFD}' };
            return Err(self.error(
                start,
                format!(
                    "binding touches `{c}`; separate it with a space or an operator, or the \
                     database would read both as one token"
                ),
            ));
        }
        let shape = self.shape(start, &source)?;
        self.out.copy_to(self.src, start);
        self.out.copied = end;
        self.pos = end;
        if matches!(source, BindingSource::User(_) | BindingSource::Claim(_)) {
            self.out.uses_user = true;
        }
        match (shape, self.dialect) {
            (Shape::Chosen(choices), _) => {
                let BindingSource::Param(param) = source else {
                    unreachable!("only params have closed lists")
                };
                self.out.push_part(Part::Chosen { param, choices });
            }
            (Shape::Array, Dialect::MySql | Dialect::Sqlite) => {
                self.out.args.push(Arg {
                    source,
                    list: true,
                    last_use: false,
                });
                self.out.push_part(Part::List {
                    slot: self.out.lists,
                });
                self.out.lists += 1;
            }
            (Shape::Array, Dialect::Postgres) if self.follows_in_paren() => {
                let path = path_of(&source);
                return Err(self.error(
                    start,
                    format!(
                        "PostgreSQL binds a list as one array value, which `IN (...)` cannot \
                         take; write `= ANY({{{{ {path} }}}})` (for NOT IN: \
                         `<> ALL({{{{ {path} }}}})`)"
                    ),
                ));
            }
            (Shape::Value | Shape::Array, dialect) => {
                self.out.args.push(Arg {
                    source,
                    list: false,
                    last_use: false,
                });
                match dialect {
                    Dialect::Postgres => {
                        let n = self.out.args.len();
                        write!(self.out.text, "${n}").expect("writing to a String cannot fail");
                    }
                    Dialect::MySql | Dialect::Sqlite => self.out.text.push('?'),
                }
            }
        }
        Ok(())
    }

    /// Parses the path inside `{{ }}` and checks that it names something that exists.
    fn binding_source(&self, start: usize, path: &str) -> Result<BindingSource, TemplateError> {
        parse_binding_path(path, self.params).map_err(|message| self.error(start, message))
    }

    fn shape(&self, start: usize, source: &BindingSource) -> Result<Shape, TemplateError> {
        let name = match source {
            BindingSource::User(UserField::Groups) => return Ok(Shape::Array),
            BindingSource::User(_) | BindingSource::Claim(_) => return Ok(Shape::Value),
            BindingSource::Param(param) => &param.name,
        };
        let spec = &self.params[name];
        let choices = match spec.ty {
            ParamType::Scalar(ScalarType::Identifier) => {
                identifier_choices(spec, self.dialect).map(Shape::Chosen)
            }
            ParamType::Scalar(ScalarType::Keyword) => keyword_choices(spec).map(Shape::Chosen),
            ParamType::Array(ScalarType::Identifier | ScalarType::Keyword) => {
                Err("lists of identifiers or keywords cannot be bound".to_string())
            }
            ParamType::Array(_) => Ok(Shape::Array),
            ParamType::Scalar(_) => Ok(Shape::Value),
        };
        choices.map_err(|message| self.error(start, format!("param `{name}`: {message}")))
    }

    /// Whether the last two code tokens are `IN` and `(`.
    fn follows_in_paren(&self) -> bool {
        match self.recent {
            [Sig::Word(s, e), Sig::Punct(b'(')] => self.src[s..e].eq_ignore_ascii_case("in"),
            _ => false,
        }
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> TemplateError {
        let before = &self.src[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        TemplateError {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message: message.into(),
        }
    }
}

/// The closed list of an `identifier` param, each value pre-quoted for `dialect`.
fn identifier_choices(spec: &ParamSpec, dialect: Dialect) -> Result<Vec<Choice>, String> {
    let quote = match dialect {
        Dialect::MySql => '`',
        Dialect::Postgres | Dialect::Sqlite => '"',
    };
    closed_list(spec, "identifier")?
        .into_iter()
        .map(|value| {
            let mut sql = String::with_capacity(value.len() + 4);
            for (i, part) in value.split('.').enumerate() {
                if part.is_empty() || part.contains('\0') {
                    return Err(format!("`{value}` is not a valid (optionally dotted) name"));
                }
                if i > 0 {
                    sql.push('.');
                }
                sql.push(quote);
                // Doubling the quote character is how all three dialects escape it.
                for c in part.chars() {
                    if c == quote {
                        sql.push(quote);
                    }
                    sql.push(c);
                }
                sql.push(quote);
            }
            Ok(Choice {
                sql: sql.into_boxed_str(),
                value,
            })
        })
        .collect()
}

/// The closed list of a `keyword` param. Its values are written verbatim, so each must be an
/// ordering such as `ASC`, `DESC NULLS LAST` or `NULLS FIRST`, and nothing else.
fn keyword_choices(spec: &ParamSpec) -> Result<Vec<Choice>, String> {
    closed_list(spec, "keyword")?
        .into_iter()
        .map(|value| {
            let words: Vec<String> = value
                .split_ascii_whitespace()
                .map(str::to_ascii_uppercase)
                .collect();
            let words: Vec<&str> = words.iter().map(String::as_str).collect();
            let ordering = matches!(
                words.as_slice(),
                ["ASC" | "DESC"]
                    | ["NULLS", "FIRST" | "LAST"]
                    | ["ASC" | "DESC", "NULLS", "FIRST" | "LAST"]
            );
            if !ordering {
                return Err(format!(
                    "`{value}` is not an ordering keyword (ASC, DESC, NULLS FIRST, NULLS LAST)"
                ));
            }
            // Stored in the canonical upper-case spelling, which is what `catalog::params`
            // hands over after matching the caller's value case-insensitively.
            let canonical = words.join(" ");
            Ok(Choice {
                sql: canonical.clone().into_boxed_str(),
                value: canonical,
            })
        })
        .collect()
}

fn closed_list(spec: &ParamSpec, kind: &str) -> Result<Vec<String>, String> {
    let values = spec.allowed.as_deref().unwrap_or_default();
    if values.is_empty() {
        return Err(format!(
            "a param of type `{kind}` needs an `enum` list of the allowed values"
        ));
    }
    values
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s.clone()),
            other => Err(format!(
                "`enum` values of an `{kind}` param must be strings, not {other}"
            )),
        })
        .collect()
}

/// A character that may continue an unquoted name in any of the dialects.
fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// A character a binding must not touch (see `Compiler::binding`).
fn touches(c: u8) -> bool {
    is_word_char(c) || matches!(c, b'\'' | b'"' | b'`' | b'{' | b'}')
}

/// The type a binding's value has: the param's declared type, or the user field's.
fn declared_type(params: &BTreeMap<String, ParamSpec>, source: &BindingSource) -> ParamType {
    match source {
        BindingSource::Param(param) => params[&param.name].ty,
        BindingSource::User(UserField::Groups) => ParamType::Array(ScalarType::Text),
        BindingSource::User(_) | BindingSource::Claim(_) => ParamType::Scalar(ScalarType::Text),
    }
}

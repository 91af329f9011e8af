//! SQL template compiler.
//!
//! Owns the turning of a stored SQL template with `{{ params.NAME }}` / `{{ user.FIELD }}`
//! bindings into a fixed statement with positional parameters for one dialect, and the
//! per-request rendering of that statement. Pure: no IO, no logging, no global state.
//!
//! The compiler lexes the template the way the target database does (string literals,
//! quoted identifiers, dollar-quoting, comments) so that it can refuse a binding that would
//! never be bound (inside a literal or comment), hand-written placeholders, and more than one
//! statement. Caller input only ever becomes a positional argument; the one exception is a
//! param of type `identifier` or `keyword`, whose value is picked from a closed list compiled
//! here, so the set of statements a template can produce is finite and known at save time.
//!
//! The lexers assume the servers' default settings: PostgreSQL with
//! `standard_conforming_strings = on` (backslash is literal in `'...'`), MySQL without
//! `ANSI_QUOTES` or `NO_BACKSLASH_ESCAPES`. A server configured otherwise could read a
//! placeholder we wrote as part of a literal; that makes the argument count disagree and the
//! statement fail, but it cannot splice a value into the SQL, because values are never text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use crate::auth::Identity;
use crate::spec::{ParamSpec, ParamType, ScalarType};
use crate::statement::{Dialect, ParamValue, RenderedSql};

/// A field of the authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserField {
    Id,
    Email,
    Role,
    Groups,
}

/// Where a binding takes its value from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BindingSource {
    Param(ParamRef),
    User(UserField),
}

/// A declared param as a binding names it: its name (for messages) and its slot, the
/// position of its value in the validated values (declared params in name order, as
/// `catalog::params` validates them). Resolved when the template compiles, so a render
/// indexes a vector instead of looking a name up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParamRef {
    pub name: String,
    pub slot: usize,
}

/// A compile error, with the 1-based line and column in the template where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A render-time failure that is the caller's fault (for example an empty list where the
/// dialect needs at least one item).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("param `{param}`: {message}")]
pub struct RenderError {
    pub param: String,
    pub message: String,
}

/// The values a render may use: validated params by slot (every declared param present,
/// absent optional ones as `ParamValue::Null`) and, when someone is signed in, the caller.
/// A SQL render moves each value into the statement at its last use (it takes the values
/// mutably); an HTTP render only reads them.
pub struct BindValues<'a> {
    pub params: &'a mut [ParamValue],
    pub user: Option<&'a Identity>,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct CompiledSql {
    sql: Sql,
    /// One entry per value binding, in the order of the placeholders.
    args: Vec<Arg>,
    uses_user: bool,
}

/// Compiles `template` for `dialect`; `params` are the declared params (already checked by
/// `catalog::params`).
pub fn compile_sql(
    template: &str,
    dialect: Dialect,
    params: &BTreeMap<String, ParamSpec>,
) -> Result<CompiledSql, TemplateError> {
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
    .run()
}

impl CompiledSql {
    /// Whether any binding reads `{{ user.* }}` (such a query needs a signed-in caller).
    pub fn uses_user(&self) -> bool {
        self.uses_user
    }

    /// Produces the statement for these values. When `values.user` is `None` and the template
    /// uses `user.*`, this is a programming error upstream (the gateway refuses anonymous
    /// callers first); render then binds NULL.
    ///
    /// A param bound once is moved into the statement, not copied; one bound several times
    /// is copied for all but its last use. Values of closed-list params (written into the
    /// text) and lists are left in place.
    pub fn render(&self, values: &mut BindValues<'_>) -> Result<RenderedSql, RenderError> {
        let mut args = Vec::with_capacity(self.args.len());
        // Item counts of the MySQL/SQLite lists, in order; stays unallocated without lists.
        let mut list_lens = Vec::new();
        for arg in &self.args {
            let value = match &arg.source {
                BindingSource::Param(param) if arg.last_use && !arg.list => {
                    take_slot(values.params, param)?
                }
                source => source.value(values)?,
            };
            if !arg.list {
                args.push(value);
                continue;
            }
            match value {
                ParamValue::Array(items) if items.is_empty() => {
                    return Err(RenderError {
                        param: arg.source.name(),
                        message: "must have at least one item for this datasource".into(),
                    });
                }
                ParamValue::Array(items) => {
                    list_lens.push(items.len());
                    args.extend(items);
                }
                // An absent optional list binds one NULL, which matches no row, as
                // `= ANY(NULL)` does on PostgreSQL.
                other => {
                    list_lens.push(1);
                    args.push(other);
                }
            }
        }
        let sql = match &self.sql {
            Sql::Static(sql) => Arc::clone(sql),
            Sql::Dynamic { parts, fixed_len } => {
                Arc::from(render_text(parts, *fixed_len, values, &list_lens)?)
            }
        };
        Ok(RenderedSql { sql, args })
    }

    /// The binding (`customer`, `user.id`) behind the 1-based argument `position` of the
    /// statement rendered from `values`, so a value the database refuses can be reported by
    /// name. Cold path: only called for errors.
    pub fn binding_at(&self, position: usize, values: &BindValues<'_>) -> Option<String> {
        let mut next = 1;
        for arg in &self.args {
            let count = match (arg.list, arg.source.value(values)) {
                (true, Ok(ParamValue::Array(items))) => items.len(),
                _ => 1,
            };
            if position < next + count {
                return Some(arg.source.name());
            }
            next += count;
        }
        None
    }
}

/// The statement text, fixed or with request-time pieces.
#[derive(Debug, Clone)]
enum Sql {
    /// No request-time text: every render hands out this same string.
    Static(Arc<str>),
    /// `fixed_len` is the length of the `Text` parts, to size the buffer once.
    Dynamic { parts: Vec<Part>, fixed_len: usize },
}

#[derive(Debug, Clone)]
enum Part {
    Text(Box<str>),
    /// An `identifier` or `keyword` param: its value picks one of `choices`.
    Chosen {
        param: ParamRef,
        choices: Vec<Choice>,
    },
    /// A MySQL/SQLite list: one `?` per item of the `slot`-th list argument.
    List {
        slot: usize,
    },
}

/// One allowed value of a closed list and the SQL text written for it.
#[derive(Debug, Clone)]
struct Choice {
    value: String,
    sql: Box<str>,
}

#[derive(Debug, Clone)]
struct Arg {
    source: BindingSource,
    /// Expanded to one argument per item (MySQL/SQLite arrays).
    list: bool,
    /// No later argument binds the same param: its value can be moved, not copied.
    last_use: bool,
}

/// Moves a param's value out of its slot (leaving `Null`).
fn take_slot(params: &mut [ParamValue], param: &ParamRef) -> Result<ParamValue, RenderError> {
    params
        .get_mut(param.slot)
        .map(std::mem::take)
        .ok_or_else(|| missing(param))
}

fn missing(param: &ParamRef) -> RenderError {
    RenderError {
        param: param.name.clone(),
        message: "no value was supplied (absent params must be passed as null)".into(),
    }
}

fn render_text(
    parts: &[Part],
    fixed_len: usize,
    values: &BindValues<'_>,
    list_lens: &[usize],
) -> Result<String, RenderError> {
    let mut sql = String::with_capacity(fixed_len + 32);
    for part in parts {
        match part {
            Part::Text(text) => sql.push_str(text),
            Part::List { slot } => {
                for i in 0..list_lens[*slot] {
                    sql.push_str(if i == 0 { "?" } else { ", ?" });
                }
            }
            Part::Chosen { param, choices } => {
                // The value was checked against the same list by `catalog::params`; checking
                // again here keeps the SQL text finite even if that check is ever bypassed.
                let chosen = match values.params.get(param.slot) {
                    Some(ParamValue::Text(text)) => choices.iter().find(|c| c.value == *text),
                    _ => None,
                };
                let Some(choice) = chosen else {
                    let allowed: Vec<&str> = choices.iter().map(|c| c.value.as_str()).collect();
                    return Err(RenderError {
                        param: param.name.clone(),
                        message: format!("must be one of: {}", allowed.join(", ")),
                    });
                };
                sql.push_str(&choice.sql);
            }
        }
    }
    Ok(sql)
}

impl BindingSource {
    /// The name errors report: `customer`, `user.id`.
    pub(crate) fn name(&self) -> String {
        match self {
            BindingSource::Param(param) => param.name.clone(),
            BindingSource::User(field) => format!("user.{}", field.name()),
        }
    }

    pub(crate) fn value(&self, values: &BindValues<'_>) -> Result<ParamValue, RenderError> {
        match self {
            BindingSource::Param(param) => values
                .params
                .get(param.slot)
                .cloned()
                .ok_or_else(|| missing(param)),
            BindingSource::User(field) => Ok(field.value(values.user)),
        }
    }
}

impl UserField {
    const ALL: [UserField; 4] = [
        UserField::Id,
        UserField::Email,
        UserField::Role,
        UserField::Groups,
    ];

    fn name(self) -> &'static str {
        match self {
            UserField::Id => "id",
            UserField::Email => "email",
            UserField::Role => "role",
            UserField::Groups => "groups",
        }
    }

    fn value(self, user: Option<&Identity>) -> ParamValue {
        let text = |s: &String| ParamValue::Text(s.clone());
        match (self, user) {
            (UserField::Groups, None) => ParamValue::Array(Vec::new()),
            (_, None) => ParamValue::Null,
            (UserField::Id, Some(u)) => text(&u.id),
            (UserField::Email, Some(u)) => text(&u.email),
            (UserField::Role, Some(u)) => ParamValue::Text(u.role.as_str().to_string()),
            (UserField::Groups, Some(u)) => ParamValue::Array(u.groups.iter().map(text).collect()),
        }
    }
}

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

struct Compiler<'a> {
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

impl Compiler<'_> {
    fn run(mut self) -> Result<CompiledSql, TemplateError> {
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
        Ok(CompiledSql {
            sql,
            args,
            uses_user: out.uses_user,
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
        if matches!(source, BindingSource::User(_)) {
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
            BindingSource::User(_) => return Ok(Shape::Value),
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

/// Parses the path inside `{{ }}` (`params.NAME` or `user.FIELD`) and checks that it names
/// a declared param or a known user field. Shared with the HTTP template compiler so both
/// accept the same bindings with the same messages.
pub(crate) fn parse_binding_path(
    path: &str,
    params: &BTreeMap<String, ParamSpec>,
) -> Result<BindingSource, String> {
    let not_a_path = || {
        let shown: String = path.chars().take(40).collect();
        let ellipsis = if shown.len() < path.len() { "..." } else { "" };
        format!(
            "`{{{{ {shown}{ellipsis} }}}}` is not a binding: a binding is a path, \
             `{{{{ params.NAME }}}}` or `{{{{ user.id|email|role|groups }}}}`, never an \
             expression (no filters, calls, operators or literals)"
        )
    };
    let Some((root, name)) = path.split_once('.') else {
        return Err(not_a_path());
    };
    if !is_plain_name(name) {
        return Err(not_a_path());
    }
    match root {
        "params" if params.contains_key(name) => Ok(BindingSource::Param(ParamRef {
            name: name.into(),
            // The slot is the name's place among the declared params, in name order.
            slot: params.keys().take_while(|k| k.as_str() < name).count(),
        })),
        "params" => {
            let declared = if params.is_empty() {
                "none are declared".to_string()
            } else {
                let names: Vec<&str> = params.keys().map(String::as_str).collect();
                format!("declared: {}", names.join(", "))
            };
            Err(format!("unknown param `{name}` ({declared})"))
        }
        "user" => UserField::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .map(BindingSource::User)
            .ok_or_else(|| {
                format!("unknown user field `{name}` (available: id, email, role, groups)")
            }),
        _ => Err(not_a_path()),
    }
}

pub(crate) fn path_of(source: &BindingSource) -> String {
    match source {
        BindingSource::Param(param) => format!("params.{}", param.name),
        BindingSource::User(field) => format!("user.{}", field.name()),
    }
}

/// A character that may continue an unquoted name in any of the dialects.
fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// A character a binding must not touch (see `Compiler::binding`).
fn touches(c: u8) -> bool {
    is_word_char(c) || matches!(c, b'\'' | b'"' | b'`' | b'{' | b'}')
}

fn is_plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use serde_json::json;

    use Dialect::{MySql, Postgres, Sqlite};

    fn spec(ty: ParamType, allowed: Option<serde_json::Value>) -> ParamSpec {
        ParamSpec {
            ty,
            required: false,
            default: None,
            nullable: false,
            min: None,
            max: None,
            max_length: None,
            pattern: None,
            allowed: allowed.map(|v| v.as_array().expect("enum is a list").clone()),
            min_items: None,
            max_items: None,
            description: None,
        }
    }

    fn declared() -> BTreeMap<String, ParamSpec> {
        use ParamType::{Array, Scalar};
        BTreeMap::from([
            ("id".into(), spec(Scalar(ScalarType::Int), None)),
            ("q".into(), spec(Scalar(ScalarType::Text), None)),
            ("ids".into(), spec(Array(ScalarType::Int), None)),
            (
                "sort".into(),
                spec(
                    Scalar(ScalarType::Identifier),
                    Some(json!(["name", "t.created_at"])),
                ),
            ),
            (
                "dir".into(),
                spec(
                    Scalar(ScalarType::Keyword),
                    Some(json!(["ASC", "DESC NULLS LAST"])),
                ),
            ),
        ])
    }

    fn values() -> HashMap<String, ParamValue> {
        HashMap::from([
            ("id".into(), ParamValue::Int(7)),
            ("q".into(), ParamValue::Text("x".into())),
            (
                "ids".into(),
                ParamValue::Array(vec![ParamValue::Int(1), ParamValue::Int(2)]),
            ),
            ("sort".into(), ParamValue::Text("t.created_at".into())),
            ("dir".into(), ParamValue::Text("DESC NULLS LAST".into())),
        ])
    }

    fn alice() -> Identity {
        Identity {
            id: "u1".into(),
            email: "alice@example.com".into(),
            role: crate::auth::Role::Admin,
            groups: vec!["sales".into(), "ops".into()],
            mfa_enabled: true,
        }
    }

    /// The values of `named` by slot for the params `declared` (absent ones are null).
    fn slots(
        declared: &BTreeMap<String, ParamSpec>,
        named: &HashMap<String, ParamValue>,
    ) -> Vec<ParamValue> {
        declared
            .keys()
            .map(|name| named.get(name).cloned().unwrap_or(ParamValue::Null))
            .collect()
    }

    fn render(
        template: &str,
        dialect: Dialect,
        params: &HashMap<String, ParamValue>,
    ) -> RenderedSql {
        let compiled = compile_sql(template, dialect, &declared()).expect("compiles");
        let user = alice();
        let mut slotted = slots(&declared(), params);
        let mut values = BindValues {
            params: &mut slotted,
            user: Some(&user),
        };
        compiled.render(&mut values).expect("renders")
    }

    /// `Ok(sql)`: the template renders to `sql` with the standard values.
    /// `Err((line, column, fragment))`: compiling fails there, with `fragment` in the message.
    type Want<'a> = Result<&'a str, (usize, usize, &'a str)>;

    fn check(input: &str, dialect: Dialect, want: Want<'_>) {
        let got = compile_sql(input, dialect, &declared());
        match (got, want) {
            (Ok(_), Ok(sql)) => {
                let rendered = render(input, dialect, &values());
                assert_eq!(&*rendered.sql, sql, "{dialect:?}: {input:?}");
            }
            (Err(e), Err((line, column, fragment))) => {
                let at = (e.line, e.column);
                assert_eq!(at, (line, column), "{dialect:?}: {input:?}: {e}");
                assert!(e.message.contains(fragment), "{dialect:?}: {input:?}: {e}");
            }
            (got, want) => panic!("{dialect:?}: {input:?}: got {got:?}, want {want:?}"),
        }
    }

    fn check_all(dialect: Dialect, cases: &[(&str, Want<'_>)]) {
        for (input, want) in cases {
            check(input, dialect, *want);
        }
    }

    /// Rules that hold in every dialect; `@` in an expected statement stands for the
    /// dialect's first placeholder.
    #[test]
    fn common_rules() {
        let cases: &[(&str, Want)] = &[
            (
                "SELECT * FROM t WHERE id = {{ params.id }}",
                Ok("SELECT * FROM t WHERE id = @"),
            ),
            ("SELECT {{params.id}}", Ok("SELECT @")),
            ("SELECT {{\n  params.id\n}} + 1", Ok("SELECT @ + 1")),
            ("SELECT ({{ params.id }}) + 0", Ok("SELECT (@) + 0")),
            ("SELECT 'it''s', {{ params.id }}", Ok("SELECT 'it''s', @")),
            (
                "SELECT 1 -- note\n  , {{ params.id }}",
                Ok("SELECT 1 -- note\n  , @"),
            ),
            // One statement; a trailing `;` (and what follows it) is dropped.
            ("SELECT 1;", Ok("SELECT 1")),
            ("SELECT 1 ;  /* done */\n", Ok("SELECT 1")),
            ("SELECT 1; SELECT 2", Err((1, 9, "one statement per query"))),
            ("SELECT 1;;", Err((1, 9, "one statement per query"))),
            (
                "SELECT 1; {{ params.id }}",
                Err((1, 9, "one statement per query")),
            ),
            (
                "SELECT 1; /* {{ params.id }} */",
                Err((1, 14, "inside a comment")),
            ),
            ("  -- nothing\n", Err((2, 1, "no SQL statement"))),
            (";", Err((1, 1, "no SQL statement"))),
            // Literals and comments.
            (
                "SELECT 'a {{ params.id }}'",
                Err((1, 11, "inside a string literal")),
            ),
            ("SELECT '{{'", Err((1, 9, "inside a string literal"))),
            ("SELECT\n  'abc", Err((2, 3, "unterminated string literal"))),
            (
                "SELECT 1 -- {{ params.id }}\n",
                Err((1, 13, "inside a comment")),
            ),
            (
                "SELECT /* a\n b {{ params.id }} */ 1",
                Err((2, 4, "inside a comment")),
            ),
            (
                "SELECT /* never closed",
                Err((1, 8, "unterminated block comment")),
            ),
            // A binding is a path, never an expression, and names something declared.
            (
                "SELECT {{ params.id + 1 }}",
                Err((1, 8, "is not a binding")),
            ),
            ("SELECT {{ 1 }}", Err((1, 8, "never an expression"))),
            (
                "SELECT {{ params.id | upper }}",
                Err((1, 8, "is not a binding")),
            ),
            ("SELECT {{ params['id'] }}", Err((1, 8, "is not a binding"))),
            ("SELECT {{ params.id.x }}", Err((1, 8, "is not a binding"))),
            ("SELECT {{ params.id", Err((1, 8, "unterminated binding"))),
            (
                "SELECT {{ params.nope }}",
                Err((
                    1,
                    8,
                    "unknown param `nope` (declared: dir, id, ids, q, sort)",
                )),
            ),
            (
                "SELECT {{ user.name }}",
                Err((
                    1,
                    8,
                    "unknown user field `name` (available: id, email, role, groups)",
                )),
            ),
            // A binding must not merge with a neighbouring token.
            (
                "SELECT x{{ params.id }}",
                Err((1, 9, "binding touches `x`")),
            ),
            (
                "SELECT {{ params.id }}0",
                Err((1, 8, "binding touches `0`")),
            ),
            (
                "SELECT {{ params.id }}{{ params.id }}",
                Err((1, 8, "binding touches `{`")),
            ),
        ];
        for (dialect, placeholder) in [(Postgres, "$1"), (MySql, "?"), (Sqlite, "?")] {
            for (input, want) in cases {
                let sql = want.map(|sql| sql.replace('@', placeholder));
                check(input, dialect, sql.as_deref().map_err(|e| *e));
            }
        }
    }

    #[test]
    fn postgres_lexing() {
        check_all(
            Postgres,
            &[
                // Dollar quoting, with and without a tag; `$$` inside a tagged body is text.
                (
                    "SELECT $$ it's {x} $$, {{ params.id }}",
                    Ok("SELECT $$ it's {x} $$, $1"),
                ),
                (
                    "SELECT $fn$ a $$ b $ c $fn$ = {{ params.id }}",
                    Ok("SELECT $fn$ a $$ b $ c $fn$ = $1"),
                ),
                (
                    "SELECT $$ {{ params.id }} $$",
                    Err((1, 11, "inside a dollar-quoted string")),
                ),
                (
                    "SELECT $a$ $$ {{ params.id }} $a$",
                    Err((1, 15, "dollar-quoted")),
                ),
                (
                    "SELECT $a$ body $b$",
                    Err((
                        1,
                        8,
                        "unterminated dollar-quoted string: close it with `$a$`",
                    )),
                ),
                // `$` inside a name is part of it, not a dollar quote or a placeholder.
                (
                    "SELECT a$1, b$$ FROM t WHERE id = {{ params.id }}",
                    Ok("SELECT a$1, b$$ FROM t WHERE id = $1"),
                ),
                // Block comments nest: the binding is still inside the outer comment.
                (
                    "/* a /* b */ {{ params.id }} */ SELECT 1",
                    Err((1, 14, "inside a comment")),
                ),
                (
                    "SELECT /* a /* b */ c */ {{ params.id }}",
                    Ok("SELECT /* a /* b */ c */ $1"),
                ),
                (
                    "SELECT /* a /* b */",
                    Err((1, 8, "unterminated block comment")),
                ),
                // Standard strings: backslash is an ordinary character.
                ("SELECT 'a\\', {{ params.id }}", Ok("SELECT 'a\\', $1")),
                // E-strings: backslash escapes, so `\'` does not end the literal.
                (
                    "SELECT E'it\\'s {{ params.id }}'",
                    Err((1, 16, "inside a string literal")),
                ),
                (
                    "SELECT e'it\\'s', {{ params.id }}",
                    Ok("SELECT e'it\\'s', $1"),
                ),
                (
                    "SELECT E'a\\\\', {{ params.id }}",
                    Ok("SELECT E'a\\\\', $1"),
                ),
                (
                    "SELECT E'never closed\\'",
                    Err((1, 8, "unterminated string literal")),
                ),
                // A name ending in `e` is not an E-string prefix.
                (
                    "SELECT type'x\\', {{ params.id }}",
                    Ok("SELECT type'x\\', $1"),
                ),
                (
                    "SELECT \"a\"\"b\", {{ params.id }}",
                    Ok("SELECT \"a\"\"b\", $1"),
                ),
                (
                    "SELECT \"col {{ params.id }}\"",
                    Err((1, 13, "inside a quoted identifier")),
                ),
                (
                    "SELECT \"col",
                    Err((1, 8, "unterminated quoted identifier")),
                ),
                // Raw placeholders; `?` is the jsonb key operator and stays.
                (
                    "SELECT * FROM t WHERE id = $1",
                    Err((1, 28, "raw placeholder `$1`")),
                ),
                (
                    "SELECT doc ? 'k', doc ?| {{ params.q }}",
                    Ok("SELECT doc ? 'k', doc ?| $1"),
                ),
                // Each occurrence gets its own number.
                (
                    "{{ params.id }} {{ user.id }} {{ params.id }}",
                    Ok("$1 $2 $3"),
                ),
                // Lists bind as one array.
                ("WHERE id = ANY({{ params.ids }})", Ok("WHERE id = ANY($1)")),
                ("WHERE g = ANY({{ user.groups }})", Ok("WHERE g = ANY($1)")),
                (
                    "WHERE id IN ({{ params.ids }})",
                    Err((1, 14, "= ANY({{ params.ids }})")),
                ),
                (
                    "WHERE id not in\n  (\n {{ params.ids }})",
                    Err((3, 2, "<> ALL({{ params.ids }})")),
                ),
                (
                    "WHERE g IN /* c */ ( {{ user.groups }} )",
                    Err((1, 22, "= ANY({{ user.groups }})")),
                ),
                // A scalar in `IN (...)` is fine.
                (
                    "WHERE id IN ({{ params.id }}, 3)",
                    Ok("WHERE id IN ($1, 3)"),
                ),
                ("SELECT f(x, {{ params.ids }})", Ok("SELECT f(x, $1)")),
                ("SELECT 1 /* tail */ ;", Ok("SELECT 1 /* tail */")),
                ("SELECT {{ params.id }}::int", Ok("SELECT $1::int")),
                (
                    "ORDER BY {{ params.sort }} {{ params.dir }}",
                    Ok("ORDER BY \"t\".\"created_at\" DESC NULLS LAST"),
                ),
            ],
        );
    }

    #[test]
    fn mysql_lexing() {
        check_all(
            MySql,
            &[
                // Backslash escapes in both quote styles; `"` is a string, not a name.
                ("SELECT 'it\\'s', {{ params.id }}", Ok("SELECT 'it\\'s', ?")),
                (
                    "SELECT 'it\\'s {{ params.id }}'",
                    Err((1, 15, "inside a string literal")),
                ),
                (
                    "SELECT \"a\\\"b\" , \"c\"\"d\", {{ params.id }}",
                    Ok("SELECT \"a\\\"b\" , \"c\"\"d\", ?"),
                ),
                (
                    "SELECT \"{{ params.q }}\"",
                    Err((1, 9, "CONCAT('%', {{ params.q }}, '%')")),
                ),
                ("SELECT 'a\\\\', {{ params.id }}", Ok("SELECT 'a\\\\', ?")),
                (
                    "SELECT 'never closed\\'",
                    Err((1, 8, "unterminated string literal")),
                ),
                ("SELECT `a``b`, {{ params.id }}", Ok("SELECT `a``b`, ?")),
                (
                    "SELECT `{{ params.id }}`",
                    Err((1, 9, "inside a quoted identifier")),
                ),
                // `#` comments, and `--` only before whitespace.
                (
                    "SELECT 1 # {{ params.id }}",
                    Err((1, 12, "inside a comment")),
                ),
                (
                    "SELECT 1 # note\n, {{ params.id }}",
                    Ok("SELECT 1 # note\n, ?"),
                ),
                (
                    "SELECT 1 --\t{{ params.id }}",
                    Err((1, 13, "inside a comment")),
                ),
                ("SELECT 5--{{ params.id }}", Ok("SELECT 5--?")),
                // Block comments do not nest; executable comments are comments too.
                (
                    "SELECT /* a /* b */ {{ params.id }}",
                    Ok("SELECT /* a /* b */ ?"),
                ),
                (
                    "SELECT /*! {{ params.id }} */ 1",
                    Err((1, 12, "inside a comment")),
                ),
                (
                    "SELECT * FROM t WHERE id = ?",
                    Err((1, 28, "raw placeholder `?`")),
                ),
                ("SELECT $a, a$b FROM t", Ok("SELECT $a, a$b FROM t")),
                ("{{ params.id }} {{ params.id }}", Ok("? ?")),
                // Lists expand; `IN (` is the usual way to use them.
                ("WHERE id IN ({{ params.ids }})", Ok("WHERE id IN (?, ?)")),
                (
                    "WHERE g IN ({{ user.groups }}) AND id = {{ params.id }}",
                    Ok("WHERE g IN (?, ?) AND id = ?"),
                ),
                (
                    "ORDER BY {{ params.sort }} {{ params.dir }}",
                    Ok("ORDER BY `t`.`created_at` DESC NULLS LAST"),
                ),
            ],
        );
    }

    #[test]
    fn sqlite_lexing() {
        check_all(
            Sqlite,
            &[
                ("SELECT 'a\\', {{ params.id }}", Ok("SELECT 'a\\', ?")),
                ("SELECT [a''b], {{ params.id }}", Ok("SELECT [a''b], ?")),
                (
                    "SELECT [col {{ params.id }}]",
                    Err((1, 13, "inside a quoted identifier")),
                ),
                (
                    "SELECT [col",
                    Err((1, 8, "unterminated quoted identifier: close it with `]`")),
                ),
                (
                    "SELECT \"{{ params.id }}\"",
                    Err((1, 9, "inside a quoted identifier")),
                ),
                (
                    "SELECT `{{ params.id }}`",
                    Err((1, 9, "inside a quoted identifier")),
                ),
                (
                    "SELECT `a``b`, \"c\"\"d\", {{ params.id }}",
                    Ok("SELECT `a``b`, \"c\"\"d\", ?"),
                ),
                (
                    "SELECT '%{{ params.q }}%'",
                    Err((1, 10, "'%' || {{ params.q }} || '%'")),
                ),
                (
                    "SELECT /* a /* b */ {{ params.id }}",
                    Ok("SELECT /* a /* b */ ?"),
                ),
                ("SELECT ?", Err((1, 8, "raw placeholder `?`"))),
                ("SELECT ?12", Err((1, 8, "raw placeholder `?12`"))),
                ("SELECT :name", Err((1, 8, "raw placeholder `:name`"))),
                ("SELECT @name", Err((1, 8, "raw placeholder `@name`"))),
                ("SELECT $name", Err((1, 8, "raw placeholder `$name`"))),
                ("SELECT a$b FROM t", Ok("SELECT a$b FROM t")),
                ("WHERE id IN ({{ params.ids }})", Ok("WHERE id IN (?, ?)")),
                ("SELECT $$ x $$", Err((1, 8, "raw placeholder"))),
                (
                    "ORDER BY {{ params.sort }} {{ params.dir }}",
                    Ok("ORDER BY \"t\".\"created_at\" DESC NULLS LAST"),
                ),
            ],
        );
    }

    #[test]
    fn closed_lists_are_checked_when_compiling() {
        use ParamType::{Array, Scalar};
        let cases = [
            (
                spec(Scalar(ScalarType::Identifier), None),
                "needs an `enum` list",
            ),
            (
                spec(Scalar(ScalarType::Identifier), Some(json!([1]))),
                "must be strings",
            ),
            (
                spec(Scalar(ScalarType::Identifier), Some(json!(["t..c"]))),
                "not a valid",
            ),
            (
                spec(Scalar(ScalarType::Keyword), Some(json!(["ASC; DROP"]))),
                "not an ordering keyword",
            ),
            (
                spec(Array(ScalarType::Identifier), Some(json!(["a"]))),
                "cannot be bound",
            ),
        ];
        for (param, fragment) in cases {
            let params = BTreeMap::from([("p".to_string(), param)]);
            let e = compile_sql("SELECT 1 ORDER BY {{ params.p }}", Postgres, &params).unwrap_err();
            assert_eq!((e.line, e.column), (1, 19), "{e}");
            assert!(
                e.message.contains("param `p`") && e.message.contains(fragment),
                "{e}"
            );
        }
    }

    #[test]
    fn identifiers_are_quoted_per_dialect() {
        let params = BTreeMap::from([(
            "c".to_string(),
            spec(
                ParamType::Scalar(ScalarType::Identifier),
                Some(json!(["we\"ird`", "s.t.c"])),
            ),
        )]);
        let cases = [
            (Postgres, "we\"ird`", "\"we\"\"ird`\""),
            (Sqlite, "we\"ird`", "\"we\"\"ird`\""),
            (MySql, "we\"ird`", "`we\"ird```"),
            (Postgres, "s.t.c", "\"s\".\"t\".\"c\""),
            (MySql, "s.t.c", "`s`.`t`.`c`"),
        ];
        for (dialect, value, want) in cases {
            let compiled = compile_sql("ORDER BY {{ params.c }}", dialect, &params).unwrap();
            let values = HashMap::from([("c".to_string(), ParamValue::Text(value.into()))]);
            let mut slotted = slots(&params, &values);
            let mut bind = BindValues {
                params: &mut slotted,
                user: None,
            };
            let rendered = compiled.render(&mut bind).unwrap();
            assert_eq!(&*rendered.sql, format!("ORDER BY {want}"), "{dialect:?}");
            assert!(rendered.args.is_empty());
        }
    }

    #[test]
    fn values_outside_the_closed_list_are_refused_at_render() {
        let compiled = compile_sql(
            "ORDER BY {{ params.sort }} {{ params.dir }}",
            Postgres,
            &declared(),
        )
        .unwrap();
        for (param, value) in [
            ("sort", ParamValue::Text("name; DROP TABLE t".into())),
            ("sort", ParamValue::Null),
            ("dir", ParamValue::Text("desc nulls last".into())),
            ("dir", ParamValue::Int(1)),
        ] {
            let mut params = values();
            params.insert(param.into(), value);
            let mut bind_slots = slots(&declared(), &params);
            let mut bind = BindValues {
                params: &mut bind_slots,
                user: None,
            };
            let e = compiled.render(&mut bind).unwrap_err();
            assert_eq!(e.param, param);
            assert!(e.message.starts_with("must be one of:"), "{e}");
        }
    }

    #[test]
    fn values_move_into_the_statement_at_their_last_use() {
        let compiled = compile_sql(
            "SELECT {{ params.q }} WHERE {{ params.q }} IS NULL OR x = {{ params.q }} AND id = {{ params.id }}",
            Postgres,
            &declared(),
        )
        .unwrap();
        let mut named = values();
        named.insert("q".into(), ParamValue::Text("needle".into()));
        let mut slotted = slots(&declared(), &named);
        let mut bind = BindValues {
            params: &mut slotted,
            user: None,
        };
        let rendered = compiled.render(&mut bind).unwrap();
        let needle = ParamValue::Text("needle".into());
        assert_eq!(
            rendered.args,
            vec![needle.clone(), needle.clone(), needle, ParamValue::Int(7)]
        );
        // Both params were moved out at their last binding, not copied.
        let slot = |name: &str| declared().keys().position(|k| k == name).unwrap();
        assert_eq!(slotted[slot("q")], ParamValue::Null);
        assert_eq!(slotted[slot("id")], ParamValue::Null);
    }

    #[test]
    fn static_sql_is_shared_between_renders() {
        for dialect in [Postgres, MySql, Sqlite] {
            let compiled = compile_sql(
                "SELECT * FROM t WHERE id = {{ params.id }};",
                dialect,
                &declared(),
            )
            .unwrap();
            let params = values();
            let mut bind_slots = slots(&declared(), &params);
            let mut bind = BindValues {
                params: &mut bind_slots,
                user: None,
            };
            let first = compiled.render(&mut bind).unwrap();
            let second = compiled.render(&mut bind).unwrap();
            assert!(Arc::ptr_eq(&first.sql, &second.sql), "{dialect:?}");
            assert_eq!(first.args, vec![ParamValue::Int(7)]);
        }
    }

    #[test]
    fn args_follow_the_placeholders() {
        let template = "WHERE a = {{ params.id }} AND o = {{ user.id }} AND g = ANY({{ user.groups }}) \
                        AND b = {{ params.id }}";
        let rendered = render(template, Postgres, &values());
        assert_eq!(
            &*rendered.sql,
            "WHERE a = $1 AND o = $2 AND g = ANY($3) AND b = $4"
        );
        let text = |s: &str| ParamValue::Text(s.into());
        assert_eq!(
            rendered.args,
            vec![
                ParamValue::Int(7),
                text("u1"),
                ParamValue::Array(vec![text("sales"), text("ops")]),
                ParamValue::Int(7),
            ]
        );

        // Substituted names take no number.
        let template = "WHERE a = {{ params.id }} ORDER BY {{ params.sort }} LIMIT {{ params.id }}";
        let rendered = render(template, Postgres, &values());
        assert_eq!(
            &*rendered.sql,
            "WHERE a = $1 ORDER BY \"t\".\"created_at\" LIMIT $2"
        );
        assert_eq!(rendered.args, vec![ParamValue::Int(7), ParamValue::Int(7)]);

        let template =
            "WHERE id IN ({{ params.ids }}) AND g IN ({{ user.groups }}) AND e = {{ user.email }}";
        let rendered = render(template, MySql, &values());
        assert_eq!(
            &*rendered.sql,
            "WHERE id IN (?, ?) AND g IN (?, ?) AND e = ?"
        );
        assert_eq!(
            rendered.args,
            vec![
                ParamValue::Int(1),
                ParamValue::Int(2),
                text("sales"),
                text("ops"),
                text("alice@example.com"),
            ]
        );
    }

    #[test]
    fn lists_need_an_item_where_they_expand() {
        let mut params = values();
        params.insert("ids".into(), ParamValue::Array(Vec::new()));
        let mut bind_slots = slots(&declared(), &params);
        let mut bind = BindValues {
            params: &mut bind_slots,
            user: None,
        };
        for dialect in [MySql, Sqlite] {
            let compiled =
                compile_sql("WHERE id IN ({{ params.ids }})", dialect, &declared()).unwrap();
            let e = compiled.render(&mut bind).unwrap_err();
            assert_eq!(e.param, "ids");
            assert!(e.message.contains("at least one item"), "{e}");
            // Without a caller, `user.groups` is empty too.
            let compiled =
                compile_sql("WHERE g IN ({{ user.groups }})", dialect, &declared()).unwrap();
            assert_eq!(compiled.render(&mut bind).unwrap_err().param, "user.groups");
        }
        // PostgreSQL binds the empty array as it is.
        let compiled =
            compile_sql("WHERE id = ANY({{ params.ids }})", Postgres, &declared()).unwrap();
        assert_eq!(
            compiled.render(&mut bind).unwrap().args,
            vec![ParamValue::Array(Vec::new())]
        );

        // An absent optional list binds a single NULL, which matches nothing.
        params.insert("ids".into(), ParamValue::Null);
        let mut bind_slots = slots(&declared(), &params);
        let mut bind = BindValues {
            params: &mut bind_slots,
            user: None,
        };
        let compiled = compile_sql("WHERE id IN ({{ params.ids }})", MySql, &declared()).unwrap();
        let rendered = compiled.render(&mut bind).unwrap();
        assert_eq!(
            (&*rendered.sql, rendered.args),
            ("WHERE id IN (?)", vec![ParamValue::Null])
        );
    }

    #[test]
    fn user_bindings() {
        let no_user = compile_sql("SELECT {{ params.id }}", Postgres, &declared()).unwrap();
        assert!(!no_user.uses_user());

        let compiled = compile_sql(
            "SELECT {{ user.id }}, {{ user.email }}, {{ user.role }}, {{ user.groups }}",
            Postgres,
            &declared(),
        )
        .unwrap();
        assert!(compiled.uses_user());
        let params = values();
        let mut anonymous_slots = slots(&declared(), &params);
        let mut anonymous = BindValues {
            params: &mut anonymous_slots,
            user: None,
        };
        assert_eq!(
            compiled.render(&mut anonymous).unwrap().args,
            vec![
                ParamValue::Null,
                ParamValue::Null,
                ParamValue::Null,
                ParamValue::Array(Vec::new())
            ]
        );
        let user = alice();
        let mut signed_in_slots = slots(&declared(), &params);
        let mut signed_in = BindValues {
            params: &mut signed_in_slots,
            user: Some(&user),
        };
        assert_eq!(
            compiled.render(&mut signed_in).unwrap().args[2],
            ParamValue::Text("admin".into())
        );
    }

    #[test]
    fn missing_param_value_is_refused() {
        let compiled = compile_sql("SELECT {{ params.q }}", Sqlite, &declared()).unwrap();
        // A value vector shorter than the declared params (never built by validation).
        let mut bind = BindValues {
            params: &mut [],
            user: None,
        };
        assert_eq!(compiled.render(&mut bind).unwrap_err().param, "q");
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let e = compile_sql("SELECT 'é', 'ü{{ params.q }}'", Postgres, &declared()).unwrap_err();
        assert_eq!((e.line, e.column), (1, 15));
    }
}

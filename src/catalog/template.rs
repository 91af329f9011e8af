//! SQL template compiler.
//!
//! `compiler` lexes and compiles a template; this file holds the compiled form and renders
//! it per request; the bindings it shares with HTTP templates are in `catalog::binding`.
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

mod compiler;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::catalog::binding::{BindValues, BindingSource, ParamRef, RenderError, take_slot};
use crate::spec::{ParamSpec, ParamType};
use crate::statement::{Dialect, ParamValue, RenderedSql};
use compiler::Compiler;

/// A compile error, with the 1-based line and column in the template where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A compiled template.
#[derive(Debug, Clone)]
pub struct CompiledSql {
    sql: Sql,
    /// One entry per value binding, in the order of the placeholders.
    args: Vec<Arg>,
    /// The declared type of each placeholder (PostgreSQL; empty for the other dialects).
    types: Arc<[ParamType]>,
    uses_user: bool,
}

/// Compiles `template` for `dialect`; `params` are the declared params (already checked by
/// `catalog::params`).
pub fn compile_sql(
    template: &str,
    dialect: Dialect,
    params: &BTreeMap<String, ParamSpec>,
) -> Result<CompiledSql, TemplateError> {
    Compiler::new(template, dialect, params).run()
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
        Ok(RenderedSql {
            sql,
            args,
            types: Arc::clone(&self.types),
        })
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

/// Most statements [`CompiledSql::describe_statements`] renders for one template.
pub const MAX_DESCRIBED_VARIANTS: usize = 64;

impl CompiledSql {
    /// Every statement this template can render, for describing their result columns
    /// without running them: one per combination of the values of its `identifier` and
    /// `keyword` params, with one placeholder per MySQL/SQLite list, and no arguments.
    /// `None` when there are more than [`MAX_DESCRIBED_VARIANTS`] combinations.
    pub fn describe_statements(&self) -> Option<Vec<RenderedSql>> {
        let statement = |sql: Arc<str>| RenderedSql {
            sql,
            args: Vec::new(),
            types: Arc::clone(&self.types),
        };
        let parts = match &self.sql {
            Sql::Static(sql) => return Some(vec![statement(Arc::clone(sql))]),
            Sql::Dynamic { parts, .. } => parts,
        };
        // The closed-list params, each with its values (a param written in several places
        // takes the same value in all of them).
        let mut chosen: Vec<(usize, Vec<&str>)> = Vec::new();
        for part in parts {
            if let Part::Chosen { param, choices } = part
                && !chosen.iter().any(|(slot, _)| *slot == param.slot)
            {
                chosen.push((
                    param.slot,
                    choices.iter().map(|c| c.value.as_str()).collect(),
                ));
            }
        }
        let count = chosen.iter().try_fold(1usize, |count, (_, values)| {
            count
                .checked_mul(values.len())
                .filter(|count| *count <= MAX_DESCRIBED_VARIANTS)
        })?;
        let mut statements = Vec::with_capacity(count);
        for mut variant in 0..count {
            let mut picked = Vec::with_capacity(chosen.len());
            for (slot, values) in &chosen {
                picked.push((*slot, values[variant % values.len()]));
                variant /= values.len();
            }
            let mut sql = String::new();
            for part in parts {
                match part {
                    Part::Text(text) => sql.push_str(text),
                    Part::List { .. } => sql.push('?'),
                    Part::Chosen { param, choices } => {
                        let value = picked
                            .iter()
                            .find(|(slot, _)| *slot == param.slot)
                            .map(|(_, value)| *value);
                        if let Some(choice) =
                            choices.iter().find(|c| Some(c.value.as_str()) == value)
                        {
                            sql.push_str(&choice.sql);
                        }
                    }
                }
            }
            statements.push(statement(Arc::from(sql)));
        }
        Some(statements)
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

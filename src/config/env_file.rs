//! Docker's env-file format (`docker run --env-file`, Compose's `env_file:`), parsed exactly
//! as the Docker CLI's released parser does, so one `docker.env` serves the container and
//! `sluice --env-file`.
//!
//! The format, line by line: a UTF-8 byte order mark at the start of the file is dropped; a
//! line ending is LF or CRLF; leading whitespace is dropped; blank lines and lines starting
//! with `#` are skipped; `NAME=VALUE` sets NAME to everything after the first `=`, taken
//! literally (no quote removal, no `$` expansion, no escapes, trailing whitespace kept); a
//! line `NAME` alone passes NAME through from the environment of the process that reads the
//! file (so it is left out here, where the process environment is consulted anyway). A name
//! may not be empty or hold a space or a tab.
//!
//! Pure: text in, entries out. Reading the file is [`super::environment`]'s job. An error
//! names the line number and never quotes a value (a value may be a secret).

/// One `NAME=VALUE` line of an env file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// 1-based line number, for messages.
    pub line: usize,
    pub name: String,
    /// `None` for a line holding a name alone (taken from the process environment).
    pub value: Option<String>,
}

/// Why a line of an env file is refused. The message names the line, never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("line {line}: not valid UTF-8")]
    NotUnicode { line: usize },
    #[error("line {line}: no variable name before `=`")]
    NoName { line: usize },
    #[error("line {line}: the variable name {name:?} contains whitespace")]
    Whitespace { line: usize, name: String },
    #[error("line {line}: contains a NUL byte, which no environment variable can hold")]
    Nul { line: usize },
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses the bytes of an env file into its entries, in file order (a later entry for the
/// same name wins, as in Docker).
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>, LineError> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let mut entries = Vec::new();
    // Docker splits on LF and drops one CR before it; a last line without LF still counts.
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if lines.last().is_some_and(|last| last.is_empty()) {
        lines.pop();
    }
    for (index, raw) in lines.into_iter().enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = std::str::from_utf8(raw).map_err(|_| LineError::NotUnicode { line })?;
        let text = text.trim_start();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        if text.contains('\0') {
            return Err(LineError::Nul { line });
        }
        let (name, value) = match text.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (text, None),
        };
        if name.is_empty() {
            return Err(LineError::NoName { line });
        }
        if name.contains([' ', '\t']) {
            return Err(LineError::Whitespace {
                line,
                name: name.to_owned(),
            });
        }
        entries.push(Entry {
            line,
            name: name.to_owned(),
            value,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, value)` of every entry of `text`.
    fn pairs(text: &str) -> Vec<(String, Option<String>)> {
        parse(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .into_iter()
            .map(|e| (e.name, e.value))
            .collect()
    }

    fn one(text: &str) -> String {
        match pairs(text).as_slice() {
            [(_, Some(value))] => value.clone(),
            other => panic!("{text:?}: expected one NAME=VALUE, got {other:?}"),
        }
    }

    #[test]
    fn values_are_literal() {
        // (line, the value Docker gives the container)
        let cases = [
            ("A=plain", "plain"),
            ("A=\"double quoted\"", "\"double quoted\""),
            ("A='single quoted'", "'single quoted'"),
            (
                "A=$HOME and ${USER} and $(id)",
                "$HOME and ${USER} and $(id)",
            ),
            (
                "A=Sluice <sluice@example.com>",
                "Sluice <sluice@example.com>",
            ),
            ("A=a=b==c", "a=b==c"),
            (
                "A=postgres://u:p@h/db?x=1&y=2",
                "postgres://u:p@h/db?x=1&y=2",
            ),
            ("A=back\\slash\\n", "back\\slash\\n"),
            ("A=  padded  ", "  padded  "),
            ("A=value # not a comment", "value # not a comment"),
            ("A=", ""),
            ("   A=indented", "indented"),
            ("\tA=tab-indented", "tab-indented"),
            ("A=ünïcödé ✓", "ünïcödé ✓"),
        ];
        for (text, value) in cases {
            assert_eq!(one(text), value, "{text:?}");
        }
    }

    #[test]
    fn comments_blanks_and_line_endings() {
        let text = "\u{feff}# comment\r\n\r\n   \n  # indented comment\nA=1\r\nB=2\r\r\nC=3";
        assert_eq!(
            pairs(text),
            [
                ("A".to_owned(), Some("1".to_owned())),
                // Only one CR before the LF is part of the line ending, as in Docker.
                ("B".to_owned(), Some("2\r".to_owned())),
                ("C".to_owned(), Some("3".to_owned())),
            ]
        );
        // The mark is dropped at the start of the file only.
        assert_eq!(one("\u{feff}A=\u{feff}x"), "\u{feff}x");
        let entries = parse(b"# one\n\nA=1\n").unwrap();
        assert_eq!(entries[0].line, 3);
        assert_eq!(pairs(""), []);
        assert_eq!(pairs("\n\n"), []);
    }

    #[test]
    fn a_name_alone_passes_through() {
        assert_eq!(pairs("HOME\n"), [("HOME".to_owned(), None)]);
    }

    #[test]
    fn later_lines_come_later() {
        assert_eq!(
            pairs("A=1\nA=2\n"),
            [
                ("A".to_owned(), Some("1".to_owned())),
                ("A".to_owned(), Some("2".to_owned())),
            ]
        );
    }

    #[test]
    fn malformed_lines_name_their_number_and_not_their_value() {
        let cases: [(&[u8], LineError); 6] = [
            (b"A=1\n=secret\n", LineError::NoName { line: 2 }),
            (
                b"A =secret\n",
                LineError::Whitespace {
                    line: 1,
                    name: "A ".into(),
                },
            ),
            (
                b"# x\nexport A=secret\n",
                LineError::Whitespace {
                    line: 2,
                    name: "export A".into(),
                },
            ),
            (
                b"A\tB=secret",
                LineError::Whitespace {
                    line: 1,
                    name: "A\tB".into(),
                },
            ),
            (b"A=1\nB=\xff\xfe\n", LineError::NotUnicode { line: 2 }),
            (b"A=se\0cret\n", LineError::Nul { line: 1 }),
        ];
        for (text, expected) in cases {
            let error = parse(text).expect_err(&String::from_utf8_lossy(text));
            assert_eq!(error, expected);
            let message = error.to_string();
            assert!(!message.contains("secret"), "{message}");
            assert_eq!(message.lines().count(), 1, "{message}");
        }
    }

    /// docker.env.example is a valid env file and every line of it sets a known variable.
    #[test]
    fn the_shipped_example_parses() {
        let entries = parse(include_bytes!("../../docker.env.example")).unwrap();
        assert!(entries.len() >= 40, "{}", entries.len());
        for entry in entries {
            assert!(entry.value.is_some(), "{entry:?}");
            assert!(
                super::super::VARIABLES
                    .iter()
                    .any(|(name, _, _)| *name == entry.name),
                "{entry:?}"
            );
        }
    }
}

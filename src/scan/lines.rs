//! The line in the catalog's YAML text where a finding's location is written.
//!
//! The YAML parser gives no spans for values, so [`line_of`] walks the location's path
//! (`apps.shop.queries.recent.params.id`) through the text's block-style keys: each
//! segment is looked for as a key indented deeper than its parent, inside the parent's
//! block. A segment that is not a block key (a field of a flow mapping `{ a: 1 }`, or a
//! setting) stops the walk at the deepest key found, so the line is that of the nearest
//! enclosing key. Pure: text in, line out.

/// The 1-based line of `location` in `yaml`, if its first segment is a key of the text.
/// Only catalog locations (`apps.`, `datasources.`) are looked for.
pub fn line_of(yaml: &str, location: &str) -> Option<usize> {
    if !(location.starts_with("apps.") || location.starts_with("datasources.")) {
        return None;
    }
    let lines: Vec<&str> = yaml.lines().collect();
    // The block the next key is looked for in: lines [start, end), keys deeper than
    // `indent` (-1 at the top).
    let (mut start, mut end, mut indent) = (0usize, lines.len(), -1isize);
    let mut found = None;
    for segment in location.split('.') {
        let Some((at, key_indent)) = find_key(&lines[start..end], segment, indent) else {
            break;
        };
        let at = start + at;
        found = Some(at + 1);
        // The key's block: the lines after it that are blank, comments or indented deeper.
        let block_end = lines[at + 1..end]
            .iter()
            .position(|l| {
                let trimmed = l.trim_start();
                !trimmed.is_empty()
                    && !trimmed.starts_with('#')
                    && (l.len() - trimmed.len()) as isize <= key_indent
            })
            .map_or(end, |p| at + 1 + p);
        (start, end, indent) = (at + 1, block_end, key_indent);
    }
    found
}

/// The first line in `lines` that is the key `name` (bare or quoted) at an indentation
/// deeper than `parent`, and the shallowest such indentation; (index, indent).
fn find_key(lines: &[&str], name: &str, parent: isize) -> Option<(usize, isize)> {
    // The block's keys sit at its first key's indentation; keys deeper belong to children.
    let mut level = None;
    for (index, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = (line.len() - trimmed.len()) as isize;
        if indent <= parent {
            return None;
        }
        let level = *level.get_or_insert(indent);
        if indent != level {
            continue;
        }
        if key_of(trimmed) == Some(name) {
            return Some((index, indent));
        }
    }
    None
}

/// The key a `key: ...` line starts with, without quotes.
fn key_of(line: &str) -> Option<&str> {
    let (key, _) = line.split_once(':')?;
    let key = key.trim_end();
    let unquoted = key
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key);
    Some(unquoted)
}

#[cfg(test)]
mod tests {
    use super::line_of;

    const CATALOG: &str = "\
# The shop.
datasources:
  db: { kind: postgres, host: db.example.com, database: shop, user: app, tls: require }
  api:
    kind: http
    base_url: https://api.example.com
    headers:
      X-Token: abc
apps:
  admin:
    queries:
      recent:
        sql: SELECT 1
  shop:
    visibility: public

    # Orders by id.
    queries:
      \"signup\":
        datasource: db
        sql: INSERT INTO leads (email) VALUES ({{ params.email }})
        params:
          email: { type: text }
          age:
            type: int
      recent:
        sql: SELECT * FROM orders
";

    #[test]
    fn locations_are_found_at_their_keys() {
        for (location, line) in [
            ("apps.shop.queries.signup", Some(19)),
            ("apps.shop.queries.signup.params.email", Some(23)),
            ("apps.shop.queries.signup.params.age", Some(24)),
            ("apps.shop.queries.recent", Some(26)),
            ("apps.admin.queries.recent", Some(12)),
            ("apps.shop.queries.signup.description", Some(19)),
            ("datasources.api.headers.X-Token", Some(8)),
            // A field of a flow mapping: the line of its datasource.
            ("datasources.db.tls", Some(3)),
            ("apps.shop.grants", Some(14)),
            // Not written in the text: the nearest enclosing key that is.
            ("apps.missing.queries.x", Some(9)),
            ("settings.SLUICE_PUBLIC_URL", None),
            ("packages.tokio@1.0.0", None),
        ] {
            assert_eq!(line_of(CATALOG, location), line, "{location}");
        }
    }

    #[test]
    fn a_key_of_a_sibling_block_is_not_taken() {
        // `recent` exists under `admin`; `shop` has none, so the walk stops at `queries`.
        let yaml = "apps:\n  admin:\n    queries:\n      recent: {}\n  shop:\n    queries:\n      other: {}\n";
        assert_eq!(line_of(yaml, "apps.shop.queries.recent"), Some(6));
    }
}

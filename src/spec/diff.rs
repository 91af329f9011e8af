//! What changes between two catalogs, by item: datasources, apps (their settings, without
//! their queries) and queries. `catalog apply` shows it and needs `--prune` when it removes
//! something; `catalog diff` prints it with the YAML lines that differ.
//!
//! Compares the specs as stored, so a re-sealed secret (a new ciphertext for the same
//! password) counts as a changed datasource.

use std::collections::BTreeMap;
use std::fmt;

use super::{AppSpec, CatalogSpec};

/// One item of a catalog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Item {
    Datasource(String),
    /// The app's own settings (visibility, grants, CORS, limits, ...).
    App(String),
    Query {
        app: String,
        query: String,
    },
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Datasource(name) => write!(f, "datasource {name}"),
            Item::App(name) => write!(f, "app {name}"),
            Item::Query { app, query } => write!(f, "query {app}/{query}"),
        }
    }
}

/// How a catalog differs from another, each list in catalog order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogDiff {
    pub added: Vec<Item>,
    pub removed: Vec<Item>,
    pub changed: Vec<Item>,
}

impl CatalogDiff {
    /// What `to` adds, removes and changes relative to `from`.
    pub fn between(from: &CatalogSpec, to: &CatalogSpec) -> CatalogDiff {
        let mut diff = CatalogDiff::default();
        diff.compare(&from.datasources, &to.datasources, |name| {
            Item::Datasource(name.to_string())
        });
        let settings = |apps: &BTreeMap<String, AppSpec>| -> BTreeMap<String, AppSpec> {
            apps.iter()
                .map(|(name, app)| {
                    let mut settings = app.clone();
                    settings.queries = Default::default();
                    (name.clone(), settings)
                })
                .collect()
        };
        diff.compare(&settings(&from.apps), &settings(&to.apps), |name| {
            Item::App(name.to_string())
        });
        let queries = |catalog: &CatalogSpec| {
            catalog
                .apps
                .iter()
                .flat_map(|(app, spec)| {
                    spec.queries
                        .iter()
                        .map(move |(query, spec)| ((app.clone(), query.clone()), spec.clone()))
                })
                .collect::<BTreeMap<_, _>>()
        };
        diff.compare(&queries(from), &queries(to), |(app, query)| Item::Query {
            app: app.clone(),
            query: query.clone(),
        });
        diff
    }

    fn compare<K: Ord, V: PartialEq>(
        &mut self,
        from: &BTreeMap<K, V>,
        to: &BTreeMap<K, V>,
        item: impl Fn(&K) -> Item,
    ) {
        for (key, value) in to {
            match from.get(key) {
                None => self.added.push(item(key)),
                Some(old) if old != value => self.changed.push(item(key)),
                Some(_) => {}
            }
        }
        self.removed
            .extend(from.keys().filter(|key| !to.contains_key(*key)).map(&item));
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One line per item: `+ query shop/orders`, `- app crm`, `~ datasource pg`.
impl fmt::Display for CatalogDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (sign, items) in [
            ('+', &self.added),
            ('-', &self.removed),
            ('~', &self.changed),
        ] {
            for item in items {
                writeln!(f, "{sign} {item}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml;

    const BEFORE: &str = "datasources:\n  db: { kind: sqlite, path: a.db }\n  old: { kind: sqlite, path: b.db }\napps:\n  shop:\n    visibility: public\n    queries:\n      a: { datasource: db, sql: SELECT 1 }\n      b: { datasource: db, sql: SELECT 2 }\n  crm:\n    queries:\n      c: { datasource: db, sql: SELECT 3 }\n";
    const AFTER: &str = "datasources:\n  db: { kind: sqlite, path: a.db, read_only: true }\n  new: { kind: sqlite, path: c.db }\napps:\n  shop:\n    visibility: workspace\n    queries:\n      a: { datasource: db, sql: SELECT 1 }\n      b: { datasource: db, sql: SELECT 22 }\n      d: { datasource: db, sql: SELECT 4 }\n";

    fn query(app: &str, query: &str) -> Item {
        Item::Query {
            app: app.into(),
            query: query.into(),
        }
    }

    #[test]
    fn names_what_is_added_removed_and_changed() {
        let (before, after) = (yaml::parse(BEFORE).unwrap(), yaml::parse(AFTER).unwrap());
        let diff = CatalogDiff::between(&before, &after);
        assert_eq!(
            diff.added,
            [Item::Datasource("new".into()), query("shop", "d")]
        );
        assert_eq!(
            diff.removed,
            [
                Item::Datasource("old".into()),
                Item::App("crm".into()),
                query("crm", "c")
            ]
        );
        assert_eq!(
            diff.changed,
            [
                Item::Datasource("db".into()),
                Item::App("shop".into()),
                query("shop", "b")
            ]
        );
        assert_eq!(
            diff.to_string(),
            "+ datasource new\n+ query shop/d\n- datasource old\n- app crm\n- query crm/c\n\
             ~ datasource db\n~ app shop\n~ query shop/b\n"
        );
        // Backwards, additions and removals swap.
        let back = CatalogDiff::between(&after, &before);
        assert_eq!((back.added.len(), back.removed.len()), (3, 2));
    }

    #[test]
    fn a_catalog_does_not_differ_from_itself() {
        let before = yaml::parse(BEFORE).unwrap();
        assert!(CatalogDiff::between(&before, &before).is_empty());
        assert_eq!(CatalogDiff::between(&before, &before).to_string(), "");
    }
}

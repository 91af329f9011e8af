//! [`SealedStore`] for the SQLite store: the secret fields in `datasources.spec`, in each
//! `catalog_revisions.spec` and `users.totp_secret`. A batch is one IMMEDIATE transaction
//! that reads its rows and writes back the changed ones, so a concurrent apply or enrolment
//! is never overwritten with a stale row, and a crash leaves each row before or after.

use rusqlite::{Connection, params};

use super::{SqliteStore, decode, rows, sqlite};
use crate::spec::{CatalogSpec, DatasourceSpec};
use crate::store::StoreError;
use crate::store::sealed::{
    BatchOutcome, Reseal, ResealCursor, SealedPlace, SealedStore, StoredSecret,
};
use crate::vault::Owner;

const STAGE_DATASOURCES: u8 = 0;
const STAGE_REVISIONS: u8 = 1;
const STAGE_USERS: u8 = 2;
const STAGE_DONE: u8 = 3;

fn datasource_secret(place: SealedPlace, name: &str, field: &str, value: &str) -> StoredSecret {
    StoredSecret {
        place,
        owner: Owner::datasource(name, field).ok(),
        owner_name: format!("datasource/{name}/{field}"),
        value: value.to_owned(),
    }
}

fn totp_secret(id: &str, value: &str) -> StoredSecret {
    StoredSecret {
        place: SealedPlace::Totp,
        owner: Owner::user(id, "totp").ok(),
        owner_name: format!("user/{id}/totp"),
        value: value.to_owned(),
    }
}

/// Calls `reseal` with each secret of one datasource and applies the replacements; returns
/// how many were replaced.
fn reseal_datasource(
    place: SealedPlace,
    name: &str,
    datasource: &mut DatasourceSpec,
    reseal: &mut dyn FnMut(&StoredSecret) -> Reseal,
) -> usize {
    let mut replaced = 0;
    for (field, value) in datasource.secret_fields_mut() {
        if let Reseal::Replace(new) = reseal(&datasource_secret(place, name, field, value)) {
            *value = new;
            replaced += 1;
        }
    }
    replaced
}

fn datasources_after(
    conn: &Connection,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT name, spec FROM datasources WHERE ?1 IS NULL OR name > ?1 \
             ORDER BY name LIMIT ?2",
        )
        .map_err(sqlite("reading datasources"))?;
    let rows = stmt
        .query_map(params![after, limit as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .map_err(sqlite("reading datasources"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sqlite("reading datasources"))
}

fn revisions_after(
    conn: &Connection,
    after: Option<i64>,
    limit: usize,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, spec FROM catalog_revisions \
             WHERE spec IS NOT NULL AND (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
        )
        .map_err(sqlite("reading the catalog history"))?;
    let rows = stmt
        .query_map(params![after, limit as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .map_err(sqlite("reading the catalog history"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sqlite("reading the catalog history"))
}

fn users_after(
    conn: &Connection,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, totp_secret FROM users \
             WHERE totp_secret IS NOT NULL AND (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
        )
        .map_err(sqlite("reading users"))?;
    let rows = stmt
        .query_map(params![after, limit as i64], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .map_err(sqlite("reading users"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sqlite("reading users"))
}

impl SealedStore for SqliteStore {
    fn stored_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        let mut conn = self.lock();
        // One read transaction: a consistent view while a rotation or an apply writes.
        let tx = conn
            .transaction()
            .map_err(sqlite("starting a read transaction"))?;
        let mut found = Vec::new();
        for (name, json) in datasources_after(&tx, None, usize::MAX >> 1)? {
            let datasource: DatasourceSpec = decode("datasource", &name, &json)?;
            for (field, value) in datasource.secret_fields() {
                if let Some(value) = value {
                    found.push(datasource_secret(SealedPlace::Catalog, &name, field, value));
                }
            }
        }
        for (id, json) in revisions_after(&tx, None, usize::MAX >> 1)? {
            let spec: CatalogSpec = decode("catalog revision", &id.to_string(), &json)?;
            for (name, datasource) in &spec.datasources {
                for (field, value) in datasource.secret_fields() {
                    if let Some(value) = value {
                        found.push(datasource_secret(
                            SealedPlace::Revision(id),
                            name,
                            field,
                            value,
                        ));
                    }
                }
            }
        }
        for (id, sealed) in users_after(&tx, None, usize::MAX >> 1)? {
            found.push(totp_secret(&id, &sealed));
        }
        Ok(found)
    }

    fn reseal_batch(
        &self,
        cursor: &ResealCursor,
        limit: usize,
        reseal: &mut dyn FnMut(&StoredSecret) -> Reseal,
    ) -> Result<BatchOutcome, StoreError> {
        let limit = limit.max(1);
        let mut conn = self.lock();
        let tx = rows::immediate(&mut conn)?;
        let mut outcome = BatchOutcome::default();
        let last = match cursor.stage {
            STAGE_DATASOURCES => {
                let found = datasources_after(&tx, cursor.after.as_deref(), limit)?;
                outcome.rows = found.len();
                for (name, json) in &found {
                    let mut datasource: DatasourceSpec = decode("datasource", name, json)?;
                    let replaced =
                        reseal_datasource(SealedPlace::Catalog, name, &mut datasource, reseal);
                    if replaced > 0 {
                        let json = serde_json::to_string(&datasource).expect("specs serialise");
                        tx.execute(
                            "UPDATE datasources SET spec = ?2 WHERE name = ?1",
                            params![name, json],
                        )
                        .map_err(sqlite("re-sealing a datasource"))?;
                        outcome.rows_written += 1;
                        outcome.values_replaced += replaced;
                    }
                }
                found.last().map(|(name, _)| name.clone())
            }
            STAGE_REVISIONS => {
                let after = match cursor.after.as_deref() {
                    Some(after) => Some(after.parse::<i64>().map_err(|_| {
                        StoreError::Unreachable("a re-seal cursor that is not a revision id")
                    })?),
                    None => None,
                };
                let found = revisions_after(&tx, after, limit)?;
                outcome.rows = found.len();
                for (id, json) in &found {
                    let mut spec: CatalogSpec = decode("catalog revision", &id.to_string(), json)?;
                    let mut replaced = 0;
                    for (name, datasource) in spec.datasources.iter_mut() {
                        replaced +=
                            reseal_datasource(SealedPlace::Revision(*id), name, datasource, reseal);
                    }
                    if replaced > 0 {
                        let json = serde_json::to_string(&spec).expect("specs serialise");
                        tx.execute(
                            "UPDATE catalog_revisions SET spec = ?2 WHERE id = ?1",
                            params![id, json],
                        )
                        .map_err(sqlite("re-sealing a catalog revision"))?;
                        outcome.rows_written += 1;
                        outcome.values_replaced += replaced;
                    }
                }
                found.last().map(|(id, _)| id.to_string())
            }
            STAGE_USERS => {
                let found = users_after(&tx, cursor.after.as_deref(), limit)?;
                outcome.rows = found.len();
                for (id, sealed) in &found {
                    if let Reseal::Replace(new) = reseal(&totp_secret(id, sealed)) {
                        // Only if unchanged since read (it cannot change inside this
                        // transaction, but the condition keeps the intent explicit).
                        let changed = tx
                            .execute(
                                "UPDATE users SET totp_secret = ?2 \
                                 WHERE id = ?1 AND totp_secret = ?3",
                                params![id, new, sealed],
                            )
                            .map_err(sqlite("re-sealing a TOTP secret"))?;
                        outcome.rows_written += changed;
                        outcome.values_replaced += changed;
                    }
                }
                found.last().map(|(id, _)| id.clone())
            }
            _ => None,
        };
        tx.commit().map_err(sqlite("committing a re-seal batch"))?;
        outcome.next = if cursor.stage >= STAGE_DONE {
            None
        } else if outcome.rows == limit {
            Some(ResealCursor {
                stage: cursor.stage,
                after: last,
            })
        } else if cursor.stage + 1 >= STAGE_DONE {
            None
        } else {
            Some(ResealCursor {
                stage: cursor.stage + 1,
                after: None,
            })
        };
        Ok(outcome)
    }
}

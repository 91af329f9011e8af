//! [`SealedStore`] for the PostgreSQL store: the secret fields in `datasources.spec`, in
//! each `catalog_revisions.spec` and `users.totp_secret`. A batch is one transaction that
//! locks what it rewrites before reading it (the catalog's advisory lock for datasources, as
//! an apply takes; the rows themselves, `FOR UPDATE`, for revisions and users), so a
//! concurrent apply or enrolment on any replica is never overwritten with a stale row, and a
//! crash leaves each row before or after. Names are ordered and compared byte-wise
//! (`COLLATE "C"`), as on SQLite, so a cursor means the same on both stores.

use super::catalog::lock_catalog;
use super::rows::Db;
use super::{Finish, PostgresStore, decode, pg};
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

async fn datasources_after(
    db: &impl Db,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<(String, String)>, StoreError> {
    Ok(db
        .query(
            "SELECT name, spec FROM datasources \
             WHERE $1::text IS NULL OR name > $1 COLLATE \"C\" \
             ORDER BY name COLLATE \"C\" LIMIT $2",
            &[&after, &limit],
        )
        .await
        .map_err(pg("reading datasources"))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

async fn revisions_after(
    db: &impl Db,
    after: Option<i64>,
    limit: i64,
    lock: bool,
) -> Result<Vec<(i64, String)>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(db
        .query(
            &format!(
                "SELECT id, spec FROM catalog_revisions \
                 WHERE spec IS NOT NULL AND ($1::bigint IS NULL OR id > $1) \
                 ORDER BY id LIMIT $2{lock}"
            ),
            &[&after, &limit],
        )
        .await
        .map_err(pg("reading the catalog history"))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

async fn users_after(
    db: &impl Db,
    after: Option<&str>,
    limit: i64,
    lock: bool,
) -> Result<Vec<(String, String)>, StoreError> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(db
        .query(
            &format!(
                "SELECT id, totp_secret FROM users \
                 WHERE totp_secret IS NOT NULL AND ($1::text IS NULL OR id > $1 COLLATE \"C\") \
                 ORDER BY id COLLATE \"C\" LIMIT $2{lock}"
            ),
            &[&after, &limit],
        )
        .await
        .map_err(pg("reading users"))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}

impl SealedStore for PostgresStore {
    fn stored_secrets(&self) -> Result<Vec<StoredSecret>, StoreError> {
        self.read("reading sealed values", async |tx| {
            let mut found = Vec::new();
            for (name, json) in datasources_after(tx, None, i64::MAX).await? {
                let datasource: DatasourceSpec = decode("datasource", &name, &json)?;
                for (field, value) in datasource.secret_fields() {
                    if let Some(value) = value {
                        found.push(datasource_secret(SealedPlace::Catalog, &name, field, value));
                    }
                }
            }
            for (id, json) in revisions_after(tx, None, i64::MAX, false).await? {
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
            for (id, sealed) in users_after(tx, None, i64::MAX, false).await? {
                found.push(totp_secret(&id, &sealed));
            }
            Ok(found)
        })
    }

    fn reseal_batch(
        &self,
        cursor: &ResealCursor,
        limit: usize,
        reseal: &mut dyn FnMut(&StoredSecret) -> Reseal,
    ) -> Result<BatchOutcome, StoreError> {
        let limit = limit.max(1);
        let rows_limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let outcome = self.write("committing a re-seal batch", async |tx| {
            let mut outcome = BatchOutcome::default();
            let last = match cursor.stage {
                STAGE_DATASOURCES => {
                    lock_catalog(tx).await?;
                    let found = datasources_after(tx, cursor.after.as_deref(), rows_limit).await?;
                    outcome.rows = found.len();
                    for (name, json) in &found {
                        let mut datasource: DatasourceSpec = decode("datasource", name, json)?;
                        let replaced =
                            reseal_datasource(SealedPlace::Catalog, name, &mut datasource, reseal);
                        if replaced > 0 {
                            let json = serde_json::to_string(&datasource).expect("specs serialise");
                            tx.execute(
                                "UPDATE datasources SET spec = $2 WHERE name = $1",
                                &[name, &json],
                            )
                            .await
                            .map_err(pg("re-sealing a datasource"))?;
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
                    let found = revisions_after(tx, after, rows_limit, true).await?;
                    outcome.rows = found.len();
                    for (id, json) in &found {
                        let mut spec: CatalogSpec =
                            decode("catalog revision", &id.to_string(), json)?;
                        let mut replaced = 0;
                        for (name, datasource) in spec.datasources.iter_mut() {
                            replaced += reseal_datasource(
                                SealedPlace::Revision(*id),
                                name,
                                datasource,
                                reseal,
                            );
                        }
                        if replaced > 0 {
                            let json = serde_json::to_string(&spec).expect("specs serialise");
                            tx.execute(
                                "UPDATE catalog_revisions SET spec = $2 WHERE id = $1",
                                &[id, &json],
                            )
                            .await
                            .map_err(pg("re-sealing a catalog revision"))?;
                            outcome.rows_written += 1;
                            outcome.values_replaced += replaced;
                        }
                    }
                    found.last().map(|(id, _)| id.to_string())
                }
                STAGE_USERS => {
                    let found = users_after(tx, cursor.after.as_deref(), rows_limit, true).await?;
                    outcome.rows = found.len();
                    for (id, sealed) in &found {
                        if let Reseal::Replace(new) = reseal(&totp_secret(id, sealed)) {
                            let changed = tx
                                .execute(
                                    "UPDATE users SET totp_secret = $2 \
                                     WHERE id = $1 AND totp_secret = $3",
                                    &[id, &new, sealed],
                                )
                                .await
                                .map_err(pg("re-sealing a TOTP secret"))?;
                            let changed = usize::try_from(changed).unwrap_or(0);
                            outcome.rows_written += changed;
                            outcome.values_replaced += changed;
                        }
                    }
                    found.last().map(|(id, _)| id.clone())
                }
                _ => None,
            };
            Ok(Finish::Commit((outcome, last)))
        })?;
        let (mut done, last) = outcome;
        done.next = if cursor.stage >= STAGE_DONE {
            None
        } else if done.rows == limit {
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
        Ok(done)
    }
}

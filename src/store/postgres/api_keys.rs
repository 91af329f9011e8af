//! [`ApiKeyStore`] for the PostgreSQL store: the `api_keys` table.
//!
//! Revocation is one conditional statement (a key is revoked once).

use tokio_postgres::Row;

use super::rows::{encode_json, insert_error};
use super::{PostgresStore, decode, pg};
use crate::store::StoreError;
use crate::store::api_keys::{ApiKeyRecord, ApiKeyScope, ApiKeyStore};

const API_KEY_COLUMNS: &str = "id, key_hash, user_id, name, scope, created_at, expires_at, \
     last_used_at, revoked_at";

fn api_key_from_row(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    let id: String = row.get("id");
    let scope = decode::<ApiKeyScope>("api key", &id, row.get::<_, &str>("scope"))?;
    Ok(ApiKeyRecord {
        key_hash: row.get("key_hash"),
        user_id: row.get("user_id"),
        name: row.get("name"),
        scope,
        created_at: row.get("created_at"),
        expires_at: row.get("expires_at"),
        last_used_at: row.get("last_used_at"),
        revoked_at: row.get("revoked_at"),
        id,
    })
}

impl ApiKeyStore for PostgresStore {
    fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.with_client(async |db| {
            db.execute(
                &format!(
                    "INSERT INTO api_keys ({API_KEY_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ),
                &[
                    &key.id,
                    &key.key_hash,
                    &key.user_id,
                    &key.name,
                    &encode_json(&key.scope),
                    &key.created_at,
                    &key.expires_at,
                    &key.last_used_at,
                    &key.revoked_at,
                ],
            )
            .await
            .map_err(insert_error("creating an API key", "API key"))?;
            Ok(())
        })
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.with_client(async |db| {
            db.query_opt(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(pg("reading an API key"))?
            .as_ref()
            .map(api_key_from_row)
            .transpose()
        })
    }

    fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.with_client(async |db| {
            db.query(
                &format!(
                    "SELECT {API_KEY_COLUMNS} FROM api_keys \
                     WHERE $1::text IS NULL OR user_id = $1 \
                     ORDER BY created_at DESC, id COLLATE \"C\""
                ),
                &[&user_id],
            )
            .await
            .map_err(pg("listing API keys"))?
            .iter()
            .map(api_key_from_row)
            .collect()
        })
    }

    fn touch_api_key(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.with_client(async |db| {
            db.execute(
                "UPDATE api_keys SET last_used_at = $2 WHERE id = $1",
                &[&id, &now],
            )
            .await
            .map_err(pg("touching an API key"))?;
            Ok(())
        })
    }

    fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        self.with_client(async |db| {
            let changed = db
                .execute(
                    "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                    &[&id, &now],
                )
                .await
                .map_err(pg("revoking an API key"))?;
            Ok(changed == 1)
        })
    }
}

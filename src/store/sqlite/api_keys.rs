//! [`ApiKeyStore`] for the SQLite store: the `api_keys` table.
//!
//! Revocation is one conditional statement (a key is revoked once).

use rusqlite::{OptionalExtension, Row, params};

use super::rows::{collect_decoded, encode_json, insert_error};
use super::{SqliteStore, decode, sqlite};
use crate::store::StoreError;
use crate::store::api_keys::{ApiKeyRecord, ApiKeyScope, ApiKeyStore};

const API_KEY_COLUMNS: &str = "id, key_hash, user_id, name, scope, created_at, expires_at, \
     last_used_at, revoked_at";

fn api_key_from_row(row: &Row<'_>) -> rusqlite::Result<Result<ApiKeyRecord, StoreError>> {
    let id: String = row.get("id")?;
    let scope = match decode::<ApiKeyScope>("api key", &id, &row.get::<_, String>("scope")?) {
        Ok(scope) => scope,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(ApiKeyRecord {
        key_hash: row.get("key_hash")?,
        user_id: row.get("user_id")?,
        name: row.get("name")?,
        scope,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        last_used_at: row.get("last_used_at")?,
        revoked_at: row.get("revoked_at")?,
        id,
    }))
}

impl ApiKeyStore for SqliteStore {
    fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        self.lock()
            .execute(
                &format!(
                    "INSERT INTO api_keys ({API_KEY_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ),
                params![
                    key.id,
                    key.key_hash,
                    key.user_id,
                    key.name,
                    encode_json(&key.scope),
                    key.created_at,
                    key.expires_at,
                    key.last_used_at,
                    key.revoked_at,
                ],
            )
            .map_err(insert_error("creating an API key", "API key"))?;
        Ok(())
    }

    fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.lock()
            .query_row(
                &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                [id],
                api_key_from_row,
            )
            .optional()
            .map_err(sqlite("reading an API key"))?
            .transpose()
    }

    fn list_api_keys(&self, user_id: Option<&str>) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE ?1 IS NULL OR user_id = ?1 \
                 ORDER BY created_at DESC, id"
            ))
            .map_err(sqlite("listing API keys"))?;
        let rows = stmt
            .query_map([user_id], api_key_from_row)
            .map_err(sqlite("listing API keys"))?;
        collect_decoded(rows, "listing API keys")
    }

    fn touch_api_key(&self, id: &str, now: i64) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
                params![id, now],
            )
            .map_err(sqlite("touching an API key"))?;
        Ok(())
    }

    fn revoke_api_key(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let changed = self
            .lock()
            .execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, now],
            )
            .map_err(sqlite("revoking an API key"))?;
        Ok(changed == 1)
    }
}

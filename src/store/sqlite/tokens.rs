//! [`TokenStore`] for the SQLite store: the `one_time_tokens` table, and the account
//! changes a token pays for.
//!
//! Spending a token is one conditional statement (of two requests racing with the same link
//! exactly one gets it), run in the same IMMEDIATE transaction as the change it pays for:
//! returning early drops the transaction and leaves the token unspent.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{decode_name, immediate, insert_error};
use super::sessions::{delete_user_sessions, insert_session};
use super::users::{insert_user, set_email, set_password, user_where};
use super::{SqliteStore, sqlite};
use crate::store::StoreError;
use crate::store::sessions::SessionRecord;
use crate::store::tokens::{TokenPurpose, TokenRecord, TokenStore};
use crate::store::users::{NewUser, UserRecord};

const TOKEN_COLUMNS: &str = "token_hash, purpose, user_id, email, created_at, expires_at";

/// A one-time token that can still be used: `?1` its hash, `?2` its purpose, `?3` now.
const USABLE_TOKEN: &str =
    "token_hash = ?1 AND purpose = ?2 AND used_at IS NULL AND expires_at > ?3";

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<Result<TokenRecord, StoreError>> {
    let token_hash: String = row.get("token_hash")?;
    // The hash names the token in the error: it is not the token, and nothing else does.
    let purpose = match decode_name::<TokenPurpose>("token", &token_hash, row.get("purpose")?) {
        Ok(purpose) => purpose,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(TokenRecord {
        purpose,
        user_id: row.get("user_id")?,
        email: row.get("email")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        token_hash,
    }))
}

fn insert_token(conn: &Connection, token: &TokenRecord) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO one_time_tokens ({TOKEN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            token.token_hash,
            token.purpose.as_str(),
            token.user_id,
            token.email,
            token.created_at,
            token.expires_at,
        ],
    )
    .map_err(insert_error("creating a token", "token"))?;
    Ok(())
}

/// Marks the token used and returns it, if it exists, has this purpose, is unused and has
/// not expired at `now`. Check and mark are one statement: of two requests racing with the
/// same link, exactly one gets the record. Spent for good only when the transaction it
/// runs in commits.
pub(super) fn consume_token(
    conn: &Connection,
    token_hash: &str,
    purpose: TokenPurpose,
    now: i64,
) -> Result<Option<TokenRecord>, StoreError> {
    conn.query_row(
        &format!(
            "UPDATE one_time_tokens SET used_at = ?3 WHERE {USABLE_TOKEN} \
             RETURNING {TOKEN_COLUMNS}"
        ),
        params![token_hash, purpose.as_str(), now],
        token_from_row,
    )
    .optional()
    .map_err(sqlite("consuming a token"))?
    .transpose()
}

/// Voids a user's unused tokens of one purpose. `now` is only a record: the token is void
/// because `used_at` is set at all.
pub(super) fn revoke_user_tokens(
    conn: &Connection,
    user_id: &str,
    purpose: TokenPurpose,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE one_time_tokens SET used_at = ?3 \
         WHERE user_id = ?1 AND purpose = ?2 AND used_at IS NULL",
        params![user_id, purpose.as_str(), now],
    )
    .map_err(sqlite("revoking tokens"))?;
    Ok(())
}

impl TokenStore for SqliteStore {
    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        insert_token(&self.lock(), token)
    }

    /// The voided tokens' `used_at` records the new token's `created_at`.
    fn replace_user_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        if let Some(user_id) = &token.user_id {
            revoke_user_tokens(&tx, user_id, token.purpose, token.created_at)?;
        }
        insert_token(&tx, token)?;
        tx.commit().map_err(sqlite("committing a new token"))
    }

    fn find_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.lock()
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM one_time_tokens WHERE {USABLE_TOKEN}"),
                params![token_hash, purpose.as_str(), now],
                token_from_row,
            )
            .optional()
            .map_err(sqlite("reading a token"))?
            .transpose()
    }

    fn complete_password_reset(
        &self,
        token_hash: &str,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        // Returning early drops the transaction: the token stays unspent.
        match consume_token(&tx, token_hash, TokenPurpose::PasswordReset, now)? {
            Some(token) if token.user_id.as_deref() == Some(user_id) => {}
            _ => return Ok(None),
        }
        set_password(&tx, user_id, hash)?;
        // A pending email change was asked for by someone who had the old password (maybe
        // not the owner): it must not outlive the reset that locks them out.
        revoke_user_tokens(&tx, user_id, TokenPurpose::EmailChange, now)?;
        let ended = delete_user_sessions(&tx, user_id)?;
        tx.commit().map_err(sqlite("committing a password reset"))?;
        Ok(Some(ended))
    }

    fn complete_signup(
        &self,
        token_hash: &str,
        now: i64,
        user: &NewUser,
        session: &SessionRecord,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        match consume_token(&tx, token_hash, TokenPurpose::Signup, now)? {
            Some(token) if token.email == user.email => {}
            _ => return Ok(None),
        }
        let created = insert_user(&tx, user)?;
        insert_session(&tx, session)?;
        tx.commit().map_err(sqlite("committing a signup"))?;
        Ok(Some(created))
    }

    fn confirm_email_change(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut conn = self.lock();
        let tx = immediate(&mut conn)?;
        let Some(TokenRecord {
            user_id: Some(id),
            email,
            ..
        }) = consume_token(&tx, token_hash, TokenPurpose::EmailChange, now)?
        else {
            return Ok(None);
        };
        set_email(&tx, &id, &email)?;
        // Reset links went to the previous address, which no longer speaks for the account
        // (people change address because they lost the old one).
        revoke_user_tokens(&tx, &id, TokenPurpose::PasswordReset, now)?;
        delete_user_sessions(&tx, &id)?;
        let user = user_where(&tx, "id = ?1", &id, "reading a user")?
            .ok_or(StoreError::NotFound("user"))?;
        tx.commit().map_err(sqlite("committing an email change"))?;
        Ok(Some(user))
    }
}

//! [`TokenStore`] for the PostgreSQL store: the `one_time_tokens` table, and the account
//! changes a token pays for.
//!
//! Spending a token is one conditional UPDATE (of two requests racing with the same link,
//! on one replica or two, exactly one gets it: the second waits for the first's row lock and
//! then finds it used), run in the same transaction as the change it pays for; a refused
//! change rolls the transaction back and leaves the token unspent.

use tokio_postgres::Row;

use super::rows::{Db, decode_name, insert_error};
use super::sessions::{delete_user_sessions, insert_session};
use super::users::{insert_user, set_email, set_password, user_by_id};
use super::{Finish, PostgresStore, pg};
use crate::store::StoreError;
use crate::store::sessions::SessionRecord;
use crate::store::tokens::{TokenPurpose, TokenRecord, TokenStore};
use crate::store::users::{NewUser, UserRecord};

const TOKEN_COLUMNS: &str = "token_hash, purpose, user_id, email, created_at, expires_at";

/// A one-time token that can still be used: `$1` its hash, `$2` its purpose, `$3` now.
const USABLE_TOKEN: &str =
    "token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3";

fn token_from_row(row: &Row) -> Result<TokenRecord, StoreError> {
    let token_hash: String = row.get("token_hash");
    let purpose = decode_name::<TokenPurpose>("token", &token_hash, row.get("purpose"))?;
    Ok(TokenRecord {
        purpose,
        user_id: row.get("user_id"),
        email: row.get("email"),
        created_at: row.get("created_at"),
        expires_at: row.get("expires_at"),
        token_hash,
    })
}

async fn insert_token(db: &impl Db, token: &TokenRecord) -> Result<(), StoreError> {
    db.execute(
        &format!("INSERT INTO one_time_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &[
            &token.token_hash,
            &token.purpose.as_str(),
            &token.user_id,
            &token.email,
            &token.created_at,
            &token.expires_at,
        ],
    )
    .await
    .map_err(insert_error("creating a token", "token"))?;
    Ok(())
}

/// Marks the token used and returns it, if it is usable at `now`; spent for good only when
/// the transaction commits.
pub(super) async fn consume_token(
    db: &impl Db,
    token_hash: &str,
    purpose: TokenPurpose,
    now: i64,
) -> Result<Option<TokenRecord>, StoreError> {
    db.query_opt(
        &format!(
            "UPDATE one_time_tokens SET used_at = $3 WHERE {USABLE_TOKEN} \
             RETURNING {TOKEN_COLUMNS}"
        ),
        &[&token_hash, &purpose.as_str(), &now],
    )
    .await
    .map_err(pg("consuming a token"))?
    .as_ref()
    .map(token_from_row)
    .transpose()
}

/// Voids a user's unused tokens of one purpose.
pub(super) async fn revoke_user_tokens(
    db: &impl Db,
    user_id: &str,
    purpose: TokenPurpose,
    now: i64,
) -> Result<(), StoreError> {
    db.execute(
        "UPDATE one_time_tokens SET used_at = $3 \
         WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL",
        &[&user_id, &purpose.as_str(), &now],
    )
    .await
    .map_err(pg("revoking tokens"))?;
    Ok(())
}

impl TokenStore for PostgresStore {
    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.with_client(async |db| insert_token(db, token).await)
    }

    fn replace_user_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.write("committing a new token", async |tx| {
            if let Some(user_id) = &token.user_id {
                revoke_user_tokens(tx, user_id, token.purpose, token.created_at).await?;
            }
            insert_token(tx, token).await?;
            Ok(Finish::Commit(()))
        })
    }

    fn find_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.with_client(async |db| {
            db.query_opt(
                &format!("SELECT {TOKEN_COLUMNS} FROM one_time_tokens WHERE {USABLE_TOKEN}"),
                &[&token_hash, &purpose.as_str(), &now],
            )
            .await
            .map_err(pg("reading a token"))?
            .as_ref()
            .map(token_from_row)
            .transpose()
        })
    }

    fn complete_password_reset(
        &self,
        token_hash: &str,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.write("committing a password reset", async |tx| {
            match consume_token(tx, token_hash, TokenPurpose::PasswordReset, now).await? {
                Some(token) if token.user_id.as_deref() == Some(user_id) => {}
                // Rolled back: a token for another account stays unspent.
                _ => return Ok(Finish::Rollback(None)),
            }
            set_password(tx, user_id, hash).await?;
            revoke_user_tokens(tx, user_id, TokenPurpose::EmailChange, now).await?;
            let ended = delete_user_sessions(tx, user_id).await?;
            Ok(Finish::Commit(Some(ended)))
        })
    }

    fn complete_signup(
        &self,
        token_hash: &str,
        now: i64,
        user: &NewUser,
        session: &SessionRecord,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.write("committing a signup", async |tx| {
            match consume_token(tx, token_hash, TokenPurpose::Signup, now).await? {
                Some(token) if token.email == user.email => {}
                _ => return Ok(Finish::Rollback(None)),
            }
            let created = insert_user(tx, user).await?;
            insert_session(tx, session).await?;
            Ok(Finish::Commit(Some(created)))
        })
    }

    fn confirm_email_change(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.write("committing an email change", async |tx| {
            let Some(TokenRecord {
                user_id: Some(id),
                email,
                ..
            }) = consume_token(tx, token_hash, TokenPurpose::EmailChange, now).await?
            else {
                return Ok(Finish::Rollback(None));
            };
            set_email(tx, &id, &email).await?;
            revoke_user_tokens(tx, &id, TokenPurpose::PasswordReset, now).await?;
            delete_user_sessions(tx, &id).await?;
            let user = user_by_id(tx, &id)
                .await?
                .ok_or(StoreError::NotFound("user"))?;
            Ok(Finish::Commit(Some(user)))
        })
    }
}

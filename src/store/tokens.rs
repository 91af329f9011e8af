//! Single-use mailed tokens (password reset, signup, email change): [`TokenPurpose`],
//! [`TokenRecord`] and [`TokenStore`], with the account changes the tokens pay for.
//!
//! A token is spent only by the operation it authorises, in the same transaction as the
//! change: a refused change leaves it unspent, and of two requests racing with the same link
//! exactly one gets it. So there is no method that spends a token alone, and the changes a
//! token pays for (a reset password, a new account, a new email) live here, each one method.
//! The store keeps only each token's SHA-256, never the token or the link.

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::sessions::SessionRecord;
use super::users::{NewUser, UserRecord};

/// What a one-time token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    PasswordReset,
    Signup,
    EmailChange,
}

impl TokenPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenPurpose::PasswordReset => "password_reset",
            TokenPurpose::Signup => "signup",
            TokenPurpose::EmailChange => "email_change",
        }
    }
}

/// A single-use token sent by mail (password reset, signup, email change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    pub purpose: TokenPurpose,
    /// The account it acts on (reset, email change); `None` for signup.
    pub user_id: Option<String>,
    /// The address it was sent to (signup, email change: the new address).
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Where one-time tokens live, and the changes they pay for. Each method is atomic.
pub trait TokenStore: Send + Sync {
    fn create_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Stores a token and voids its user's unused tokens of the same purpose (a new link
    /// voids older ones), in one transaction. A token without a user is only stored.
    fn replace_user_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// The token, if it exists, has this purpose, is unused and has not expired at `now`,
    /// without using it (to validate a form before spending the token).
    fn find_token(
        &self,
        token_hash: &str,
        purpose: TokenPurpose,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError>;
    /// Completes a password reset, in one transaction: spends the reset token (usable at
    /// `now` and issued for `user_id`), sets the password hash (clearing the failure count
    /// and any lock), voids the account's unused email-change tokens and ends all its
    /// sessions. Returns how many sessions ended, or `None` (nothing changed) when the token
    /// is not usable.
    fn complete_password_reset(
        &self,
        token_hash: &str,
        user_id: &str,
        hash: &str,
        now: i64,
    ) -> Result<Option<u64>, StoreError>;
    /// Completes a signup, in one transaction: spends the signup token (usable at `now` and
    /// sent to `user.email`), creates the account and opens its first `session`. `None`
    /// (nothing changed) when the token is not usable; [`StoreError::Conflict`] with
    /// [`EMAIL_TAKEN`](super::users::EMAIL_TAKEN) when the email is taken, and then the
    /// token stays unspent.
    fn complete_signup(
        &self,
        token_hash: &str,
        now: i64,
        user: &NewUser,
        session: &SessionRecord,
    ) -> Result<Option<UserRecord>, StoreError>;
    /// Applies an email change, in one transaction: spends the email-change token (usable
    /// at `now`), sets its account's email to the token's address, voids the account's
    /// unused reset tokens (they went to the old address) and ends all its sessions.
    /// Returns the changed account, or `None` (nothing changed) when the token is not
    /// usable. [`StoreError::Conflict`] when the address is taken, and then the token stays
    /// unspent.
    fn confirm_email_change(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError>;
}

//! Workspace API keys: created by admins and developers with a scope, shown once, stored
//! hashed, revocable. A key runs queries as the user who created it, within its scope.

use serde::Serialize;

use super::cache::Use;
use super::{AuthError, AuthService, Caller, CallerVia};
use crate::auth::{ApiKeyScope, ClientInfo, Identity, Role, token};
use crate::store::api_keys::ApiKeyRecord;
use crate::store::sessions::AuthChange;

/// The caller a live key makes.
fn key_caller(identity: Identity, key: ApiKeyRecord) -> Caller {
    Caller {
        user: identity,
        via: CallerVia::ApiKey {
            id: key.id,
            scope: key.scope,
        },
    }
}

/// A key just created; `key` is shown this once.
#[derive(Debug, Serialize)]
pub struct CreatedApiKey {
    pub id: String,
    pub key: String,
    pub name: String,
    pub scope: ApiKeyScope,
    pub expires_at: Option<i64>,
}

/// Keys touched more recently than this are not written again (`last_used_at` is exact to
/// within this many seconds).
const TOUCH_EVERY_SECS: i64 = 60;

impl AuthService {
    /// Creates a key for the caller. Admins and developers only; fresh auth required.
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        name: String,
        scope: ApiKeyScope,
        expires_at: Option<i64>,
        client: &ClientInfo,
    ) -> Result<CreatedApiKey, AuthError> {
        if !matches!(caller.user.role, Role::Admin | Role::Developer) {
            return Err(AuthError::Forbidden(
                "only admins and developers create API keys",
            ));
        }
        self.require_fresh(caller)?;
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(AuthError::InvalidInput(
                "`name` must be 1 to 100 characters without control characters".into(),
            ));
        }
        if scope.apps.is_empty() && scope.queries.is_empty() {
            return Err(AuthError::InvalidInput(
                "`scope` must name at least one app (`apps`) or query (`queries`, as app/query)"
                    .into(),
            ));
        }
        if let Some(bad) = scope.queries.iter().find(|q| {
            q.split_once('/')
                .is_none_or(|(a, q)| a.is_empty() || q.is_empty() || q.contains('/'))
        }) {
            return Err(AuthError::InvalidInput(format!(
                "`scope.queries` entry `{bad}` must be `app/query`"
            )));
        }
        let now = self.now();
        if expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::InvalidInput(
                "`expires_at` must be in the future".into(),
            ));
        }
        let new = token::new_api_key();
        let record = ApiKeyRecord {
            id: new.id.clone(),
            key_hash: new.hash.clone(),
            user_id: caller.user.id.clone(),
            name: name.clone(),
            scope: scope.clone(),
            created_at: now,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        self.run(move |store| Ok(store.create_api_key(&record)?))
            .await?;
        let mut event = self.audit.event("api_key_created", client);
        event.user_id = Some(caller.user.id.clone());
        event.details =
            Some(serde_json::json!({ "key_id": new.id, "name": name, "scope": scope }).to_string());
        self.audit.append(event).await;
        Ok(CreatedApiKey {
            id: new.id,
            key: new.key.expose().to_string(),
            name,
            scope,
            expires_at,
        })
    }

    /// Finds the caller for an `Authorization: Bearer slk_...` key. With a shared store, a
    /// key this replica read moments ago answers from its cache (see
    /// [`cache`](super::cache)); the presented key is compared with the cached hash as with
    /// the stored one.
    pub async fn authenticate_api_key(&self, presented: &str) -> Result<Caller, AuthError> {
        let Some(id) = token::api_key_id(presented).map(str::to_owned) else {
            return Err(AuthError::Unauthenticated);
        };
        let hash = token::hash_token(presented);
        let now = self.now();
        let now_ms = self.clock.now_millis();
        let live = move |key: &ApiKeyRecord| {
            key.revoked_at.is_none() && key.expires_at.is_none_or(|at| at > now)
        };
        let Some(cache) = &self.cache else {
            return self
                .key_from_store(id, hash, now)
                .await
                .map(|(caller, _)| caller);
        };
        let cached_caller = |key: ApiKeyRecord, identity: Identity| {
            if live(&key) && token::hashes_equal(&hash, &key.key_hash) {
                Ok(key_caller(identity, key))
            } else {
                Err(AuthError::Unauthenticated)
            }
        };
        if let Some(hit) = cache.key(&id, now_ms, Use::Fresh)
            && hit
                .key
                .last_used_at
                .is_some_and(|at| now - at < TOUCH_EVERY_SECS)
        {
            self.metrics.auth_cache("hit");
            return cached_caller(hit.key, hit.identity);
        }
        let generation = cache.generation();
        match self.key_from_store(id.clone(), hash.clone(), now).await {
            Ok((caller, admitted)) => {
                self.metrics.auth_cache("miss");
                if let Some((key, identity)) = admitted {
                    cache.put_key(generation, key, identity, now_ms);
                }
                Ok(caller)
            }
            Err(AuthError::Store(error)) => match cache.key(&id, now_ms, Use::Stale) {
                Some(stale) => {
                    self.metrics.auth_cache("stale");
                    cached_caller(stale.key, stale.identity)
                }
                None => Err(AuthError::Store(error)),
            },
            Err(error) => Err(error),
        }
    }

    /// The store's answer for a key, with what the cache may keep of it.
    async fn key_from_store(
        &self,
        id: String,
        hash: String,
        now: i64,
    ) -> Result<(Caller, Option<(ApiKeyRecord, Identity)>), AuthError> {
        self.run(move |store| {
            let Some(mut key) = store.api_key(&id)? else {
                return Err(AuthError::Unauthenticated);
            };
            let live = key.revoked_at.is_none() && key.expires_at.is_none_or(|at| at > now);
            if !live || !token::hashes_equal(&hash, &key.key_hash) {
                return Err(AuthError::Unauthenticated);
            }
            // A key works only while its creator may still create keys: disabling the user
            // or demoting them to viewer stops it.
            let user = match store.user_by_id(&key.user_id)? {
                Some(user) if !user.disabled && user.role != Role::Viewer => user,
                _ => return Err(AuthError::Unauthenticated),
            };
            if key
                .last_used_at
                .is_none_or(|at| now - at >= TOUCH_EVERY_SECS)
            {
                store.touch_api_key(&id, now)?;
                key.last_used_at = Some(now);
            }
            let identity = super::identity(&user);
            Ok((
                key_caller(identity.clone(), key.clone()),
                Some((key, identity)),
            ))
        })
        .await
    }

    /// The caller's keys; admins may ask for everyone's.
    pub async fn api_keys(
        &self,
        caller: &Caller,
        all: bool,
    ) -> Result<Vec<ApiKeyRecord>, AuthError> {
        let user = (!(all && caller.user.role == Role::Admin)).then(|| caller.user.id.clone());
        self.run(move |store| Ok(store.list_api_keys(user.as_deref())?))
            .await
    }

    /// Every key neither revoked nor expired (what the security scan checks).
    pub async fn live_api_keys(&self) -> Result<Vec<ApiKeyRecord>, AuthError> {
        let now = self.now();
        let keys = self.run(|store| Ok(store.list_api_keys(None)?)).await?;
        Ok(keys
            .into_iter()
            .filter(|key| key.revoked_at.is_none() && key.expires_at.is_none_or(|at| at > now))
            .collect())
    }

    /// Revokes a key: its owner or an admin.
    pub async fn revoke_api_key(
        &self,
        caller: &Caller,
        id: String,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let now = self.now();
        let (user_id, is_admin) = (caller.user.id.clone(), caller.user.role == Role::Admin);
        let key_id = id.clone();
        self.run(move |store| {
            match store.api_key(&key_id)? {
                Some(key) if key.user_id == user_id || is_admin => {}
                _ => return Err(AuthError::NotFound("API key")),
            }
            if store.revoke_api_key(&key_id, now)? {
                Ok(())
            } else {
                Err(AuthError::NotFound("API key"))
            }
        })
        .await?;
        // Before the store's notice comes back: the key fails here at once.
        if let Some(cache) = &self.cache {
            cache.forget(&AuthChange::ApiKey(id.clone()));
        }
        let mut event = self.audit.event("api_key_revoked", client);
        event.user_id = Some(caller.user.id.clone());
        event.details = Some(serde_json::json!({ "key_id": id }).to_string());
        self.audit.append(event).await;
        Ok(())
    }
}

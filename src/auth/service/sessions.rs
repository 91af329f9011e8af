//! Sessions: opening (not storing) a new or rotated session, finding the live session
//! for a cookie with its idle and absolute lifetimes, signing out (here or everywhere),
//! listing and ending the caller's own sessions, and purging expired ones.
//!
//! Owns session lifetimes. Must never store or log a session id in the clear (only its
//! SHA-256 hash is kept) and never revive a session that has expired or whose account is
//! disabled.

use super::cache::Use;
use super::{AuthError, AuthService, NewSession, identity};
use crate::auth::{Caller, CallerVia, ClientInfo, Identity, token};
use crate::store::sessions::{AuthChange, SessionRecord};

/// The caller a live session makes.
fn session_caller(identity: Identity, session: SessionRecord) -> Caller {
    Caller {
        user: identity,
        via: CallerVia::Session {
            token_hash: session.token_hash,
            public_id: session.public_id,
            created_at: session.created_at,
            authenticated_at: session.authenticated_at,
        },
    }
}

/// Last-seen times are written at most this often per session (the idle timeout is then
/// exact to within this many seconds).
const TOUCH_EVERY_SECS: i64 = 60;

impl AuthService {
    /// A new session for `user_id`, not stored yet: the operation that opens it stores it
    /// together with whatever else it changes.
    pub(super) fn new_session(&self, user_id: &str, client: &ClientInfo) -> NewSession {
        let now = self.now();
        self.session_for(user_id, client, now, now)
    }

    /// The caller's session under a new id (after a privilege change), keeping its creation
    /// and authentication times, not stored yet; with the token hash of the session it
    /// replaces. `None` for an API key.
    pub(super) fn rotated_session(
        &self,
        caller: &Caller,
        client: &ClientInfo,
    ) -> Option<(String, NewSession)> {
        let CallerVia::Session {
            token_hash,
            created_at,
            authenticated_at,
            ..
        } = &caller.via
        else {
            return None;
        };
        let session = self.session_for(&caller.user.id, client, *created_at, *authenticated_at);
        Some((token_hash.clone(), session))
    }

    fn session_for(
        &self,
        user_id: &str,
        client: &ClientInfo,
        created_at: i64,
        authenticated_at: i64,
    ) -> NewSession {
        let token = token::random_token();
        let record = SessionRecord {
            token_hash: token::hash_token(&token),
            public_id: token::public_id(),
            user_id: user_id.to_string(),
            created_at,
            last_seen_at: self.now(),
            authenticated_at,
            ip: client.ip.clone(),
            user_agent: client.stored_user_agent(),
        };
        NewSession {
            token: crate::vault::SecretString::new(token),
            record,
        }
    }

    /// Finds the live session for a cookie value; expired sessions are deleted on sight.
    /// With a shared store, a session this replica read moments ago answers from its cache
    /// (see [`cache`](super::cache)).
    pub async fn authenticate_session(&self, presented: &str) -> Result<Caller, AuthError> {
        let hash = token::hash_token(presented);
        let now = self.now();
        let now_ms = self.clock.now_millis();
        let idle = self.settings.session_idle_timeout.as_secs() as i64;
        let absolute = self.settings.session_absolute_timeout.as_secs() as i64;
        // The cache answers only when the store has nothing to decide or write: not near an
        // expiry, last-seen time not due for its update.
        let settled = |session: &SessionRecord| {
            now - session.last_seen_at < TOUCH_EVERY_SECS.min(idle)
                && now - session.created_at <= absolute
        };
        let Some(cache) = &self.cache else {
            return self
                .session_from_store(hash, now, idle, absolute)
                .await
                .map(|(caller, _)| caller);
        };
        if let Some(hit) = cache.session(&hash, now_ms, Use::Fresh)
            && settled(&hit.session)
        {
            self.metrics.auth_cache("hit");
            return Ok(session_caller(hit.identity, hit.session));
        }
        let generation = cache.generation();
        match self
            .session_from_store(hash.clone(), now, idle, absolute)
            .await
        {
            Ok((caller, admitted)) => {
                self.metrics.auth_cache("miss");
                if let Some((session, identity)) = admitted {
                    cache.put_session(generation, session, identity, now_ms);
                }
                Ok(caller)
            }
            Err(AuthError::Store(error)) => match cache.session(&hash, now_ms, Use::Stale) {
                Some(stale)
                    if now - stale.session.last_seen_at <= idle
                        && now - stale.session.created_at <= absolute =>
                {
                    self.metrics.auth_cache("stale");
                    Ok(session_caller(stale.identity, stale.session))
                }
                _ => Err(AuthError::Store(error)),
            },
            Err(error) => Err(error),
        }
    }

    /// The store's answer for a session, with what the cache may keep of it.
    async fn session_from_store(
        &self,
        hash: String,
        now: i64,
        idle: i64,
        absolute: i64,
    ) -> Result<(Caller, Option<(SessionRecord, Identity)>), AuthError> {
        self.run(move |store| {
            let Some(mut session) = store.session_by_hash(&hash)? else {
                return Err(AuthError::Unauthenticated);
            };
            if now - session.last_seen_at > idle || now - session.created_at > absolute {
                store.delete_session(&hash)?;
                return Err(AuthError::Unauthenticated);
            }
            let user = match store.user_by_id(&session.user_id)? {
                Some(user) if !user.disabled => user,
                _ => {
                    store.delete_session(&hash)?;
                    return Err(AuthError::Unauthenticated);
                }
            };
            if now - session.last_seen_at >= TOUCH_EVERY_SECS {
                store.touch_session(&hash, now)?;
                session.last_seen_at = now;
            }
            let identity = identity(&user);
            Ok((
                session_caller(identity.clone(), session.clone()),
                Some((session, identity)),
            ))
        })
        .await
    }

    /// Signs out this session.
    pub async fn logout(&self, caller: &Caller, client: &ClientInfo) -> Result<(), AuthError> {
        if let Some(hash) = caller.session_hash().map(str::to_owned) {
            let deleted = hash.clone();
            self.run(move |store| Ok(store.delete_session(&deleted)?))
                .await?;
            // Before the store's notice comes back: a reused cookie fails here at once.
            if let Some(cache) = &self.cache {
                cache.forget(&AuthChange::Session(hash));
            }
        }
        let mut event = self.audit.event("logout", client);
        event.user_id = Some(caller.user.id.clone());
        self.audit.append(event).await;
        Ok(())
    }

    /// Signs out every session of the caller's account; returns how many ended.
    pub async fn logout_everywhere(
        &self,
        caller: &Caller,
        client: &ClientInfo,
    ) -> Result<u64, AuthError> {
        let id = caller.user.id.clone();
        let ended = self
            .run(move |store| Ok(store.delete_user_sessions(&id)?))
            .await?;
        if let Some(cache) = &self.cache {
            cache.forget(&AuthChange::User(caller.user.id.clone()));
        }
        let mut event = self.audit.event("logout", client);
        event.user_id = Some(caller.user.id.clone());
        event.details =
            Some(serde_json::json!({ "everywhere": true, "sessions": ended }).to_string());
        self.audit.append(event).await;
        Ok(ended)
    }

    pub async fn sessions(&self, caller: &Caller) -> Result<Vec<SessionRecord>, AuthError> {
        let id = caller.user.id.clone();
        self.run(move |store| Ok(store.list_user_sessions(&id)?))
            .await
    }

    /// Ends one of the caller's own sessions by its public id.
    pub async fn end_session(
        &self,
        caller: &Caller,
        public_id: String,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let id = caller.user.id.clone();
        let ended = self
            .run(move |store| Ok(store.delete_session_by_public_id(&id, &public_id)?))
            .await?;
        if !ended {
            return Err(AuthError::NotFound("session"));
        }
        let mut event = self.audit.event("logout", client);
        event.user_id = Some(caller.user.id.clone());
        event.details = Some(r#"{"other_session":true}"#.into());
        self.audit.append(event).await;
        Ok(())
    }

    /// Deletes expired sessions (run periodically).
    pub async fn purge_expired(&self) -> Result<u64, AuthError> {
        let now = self.now();
        let idle = now - self.settings.session_idle_timeout.as_secs() as i64;
        let absolute = now - self.settings.session_absolute_timeout.as_secs() as i64;
        self.run(move |store| Ok(store.purge_sessions(idle, absolute)?))
            .await
    }
}

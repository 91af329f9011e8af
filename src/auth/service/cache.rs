//! The per-replica cache of sessions and API keys, for a store several replicas share
//! (PostgreSQL): a signed-in request then costs no store round trip.
//!
//! What is cached: for a session, its record and the identity its account grants; for a
//! key, its record and its creator's identity; only what passed every check (a live,
//! unexpired session of an enabled account; an unrevoked, unexpired key of an enabled,
//! non-viewer creator). The store announces every change that could make an entry wrong,
//! whoever makes it (`store::sessions::AuthChange`: a deleted session, a changed or deleted
//! user, a changed or deleted key, sent by triggers, so the CLI and hand-written SQL count
//! too), and the entry is forgotten when the notice arrives, within milliseconds.
//!
//! Trust rules:
//! - An entry answers only while the listener is connected ([`AuthChange::Listening`] seen,
//!   no [`AuthChange::Lost`] since) and for at most `SLUICE_AUTH_CACHE_SECS` after it was
//!   read (the backstop for a notice lost in flight). Connecting again forgets everything,
//!   since notices sent meanwhile are lost; so does a receiver that lagged.
//! - A read that raced a notice is not cached: each insert carries the generation it read
//!   under, and any notice moves the generation on.
//! - The hit path never writes: a session whose last-seen time is due for its update, or
//!   that is close to an expiry, goes to the store, which decides and writes.
//! - While the store cannot be reached, an entry read within `SLUICE_AUTH_CACHE_STALE_SECS`
//!   still answers ("stale", counted in `sluice_auth_cache_lookups_total{result="stale"}`),
//!   after the same expiry checks; `/readyz` says not ready meanwhile, so a balancer moves
//!   traffic away. Nothing new is admitted that the store did not admit before.
//!
//! Holds SHA-256 hashes of session tokens and keys, never a token; never logs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::auth::Identity;
use crate::clock::SharedClock;
use crate::store::api_keys::ApiKeyRecord;
use crate::store::sessions::{AuthChange, AuthChanges, SessionRecord};

/// Entries kept at most; beyond it, inserts are skipped until notices or time free room.
const MAX_ENTRIES: usize = 50_000;

/// A session that passed every check, with the identity its account grants.
#[derive(Clone)]
pub(super) struct CachedSession {
    pub session: SessionRecord,
    pub identity: Identity,
    read_at_ms: i64,
}

/// A key that passed every check, with its creator's identity.
#[derive(Clone)]
pub(super) struct CachedKey {
    pub key: ApiKeyRecord,
    pub identity: Identity,
    read_at_ms: i64,
}

#[derive(Default)]
struct Entries {
    sessions: HashMap<String, CachedSession>,
    keys: HashMap<String, CachedKey>,
}

impl Entries {
    fn len(&self) -> usize {
        self.sessions.len() + self.keys.len()
    }
}

/// How a lookup may use an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Use {
    /// The store answers: only a fresh entry of a connected listener.
    Fresh,
    /// The store cannot be reached: an entry within the stale bound.
    Stale,
}

pub(super) struct AuthCache {
    clock: SharedClock,
    ttl_ms: i64,
    stale_ms: i64,
    entries: Mutex<Entries>,
    /// Whether the store's notices are arriving.
    listening: AtomicBool,
    /// Moves on with every notice.
    generation: AtomicU64,
}

impl AuthCache {
    /// A cache fed by `changes` (a task follows them until the store stops announcing).
    pub(super) fn start(
        changes: AuthChanges,
        clock: SharedClock,
        ttl: Duration,
        stale: Duration,
    ) -> Arc<AuthCache> {
        let cache = Arc::new(AuthCache {
            clock,
            ttl_ms: ttl.as_millis() as i64,
            stale_ms: stale.as_millis() as i64,
            entries: Mutex::new(Entries::default()),
            listening: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        });
        tokio::spawn(follow(Arc::downgrade(&cache), changes));
        cache
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The generation to pass to an insert, read before the store is.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn usable(&self, read_at_ms: i64, now_ms: i64, usage: Use) -> bool {
        let age = now_ms.saturating_sub(read_at_ms);
        match usage {
            Use::Fresh => self.listening.load(Ordering::Acquire) && age < self.ttl_ms,
            Use::Stale => age < self.stale_ms,
        }
    }

    pub(super) fn session(&self, hash: &str, now_ms: i64, usage: Use) -> Option<CachedSession> {
        let entries = self.entries();
        let entry = entries.sessions.get(hash)?;
        self.usable(entry.read_at_ms, now_ms, usage)
            .then(|| entry.clone())
    }

    pub(super) fn key(&self, id: &str, now_ms: i64, usage: Use) -> Option<CachedKey> {
        let entries = self.entries();
        let entry = entries.keys.get(id)?;
        self.usable(entry.read_at_ms, now_ms, usage)
            .then(|| entry.clone())
    }

    /// Keeps what the store just admitted, unless a notice arrived since `generation` was
    /// read (the read may predate the change it announced).
    pub(super) fn put_session(
        &self,
        generation: u64,
        session: SessionRecord,
        identity: Identity,
        now_ms: i64,
    ) {
        let mut entries = self.entries();
        if self.generation() != generation || entries.len() >= MAX_ENTRIES {
            return;
        }
        entries.sessions.insert(
            session.token_hash.clone(),
            CachedSession {
                session,
                identity,
                read_at_ms: now_ms,
            },
        );
    }

    pub(super) fn put_key(
        &self,
        generation: u64,
        key: ApiKeyRecord,
        identity: Identity,
        now_ms: i64,
    ) {
        let mut entries = self.entries();
        if self.generation() != generation || entries.len() >= MAX_ENTRIES {
            return;
        }
        entries.keys.insert(
            key.id.clone(),
            CachedKey {
                key,
                identity,
                read_at_ms: now_ms,
            },
        );
    }

    /// Applies one notice (also called directly after this replica's own sign-outs, so they
    /// hold here before the notice comes back).
    pub(super) fn forget(&self, change: &AuthChange) {
        // Under the lock, so an insert checking the generation either sees the new one or
        // lands before this removal.
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        match change {
            AuthChange::Listening => {
                *entries = Entries::default();
                self.listening.store(true, Ordering::Release);
            }
            AuthChange::Lost => self.listening.store(false, Ordering::Release),
            AuthChange::Session(hash) => {
                entries.sessions.remove(hash);
            }
            AuthChange::User(id) => {
                entries.sessions.retain(|_, entry| entry.identity.id != *id);
                entries.keys.retain(|_, entry| entry.identity.id != *id);
            }
            AuthChange::ApiKey(id) => {
                entries.keys.remove(id);
            }
        }
    }

    /// Forgets everything and stops trusting the cache (the receiver lagged or closed).
    fn forget_all(&self, listening: bool) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        *entries = Entries::default();
        self.listening.store(listening, Ordering::Release);
    }

    /// Drops entries past the stale bound (and past the fresh one when there is no stale
    /// use), so the map holds only what may still answer.
    fn prune(&self, now_ms: i64) {
        let keep = self.ttl_ms.max(self.stale_ms);
        let mut entries = self.entries();
        entries
            .sessions
            .retain(|_, entry| now_ms.saturating_sub(entry.read_at_ms) < keep);
        entries
            .keys
            .retain(|_, entry| now_ms.saturating_sub(entry.read_at_ms) < keep);
    }
}

/// Applies the store's notices to the cache until either goes away; prunes every 10 s.
async fn follow(cache: std::sync::Weak<AuthCache>, mut changes: AuthChanges) {
    let mut prune = tokio::time::interval(Duration::from_secs(10));
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(cache) = cache.upgrade() else { return };
                match change {
                    Ok(change) => cache.forget(&change),
                    // Notices were dropped: nothing cached can be trusted.
                    Err(RecvError::Lagged(_)) => cache.forget_all(true),
                    Err(RecvError::Closed) => {
                        cache.forget_all(false);
                        return;
                    }
                }
            }
            _ = prune.tick() => {
                let Some(cache) = cache.upgrade() else { return };
                cache.prune(cache.clock.now_millis());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::broadcast;

    use super::*;
    use crate::auth::Role;
    use crate::clock::{Clock, ManualClock};

    fn identity(id: &str) -> Identity {
        Identity {
            id: id.into(),
            email: format!("{id}@example.com"),
            role: Role::Developer,
            groups: vec![],
            mfa_enabled: false,
            claims: Default::default(),
        }
    }

    fn session(hash: &str, user: &str) -> SessionRecord {
        SessionRecord {
            token_hash: hash.into(),
            public_id: format!("p-{hash}"),
            user_id: user.into(),
            created_at: 0,
            last_seen_at: 0,
            authenticated_at: 0,
            ip: "192.0.2.1".into(),
            user_agent: String::new(),
        }
    }

    /// A cache on a channel the test sends notices into, its clock, and the channel.
    async fn cache() -> (Arc<AuthCache>, ManualClock, broadcast::Sender<AuthChange>) {
        let (sender, receiver) = broadcast::channel(4);
        let clock = ManualClock::new();
        let cache = AuthCache::start(
            receiver,
            Arc::new(clock.clone()),
            Duration::from_secs(5),
            Duration::from_secs(60),
        );
        (cache, clock, sender)
    }

    /// Waits until the follower has applied what was sent.
    async fn settle(cache: &AuthCache, generation: u64) {
        for _ in 0..200 {
            if cache.generation() > generation {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("the notice was not applied");
    }

    async fn notify(cache: &AuthCache, sender: &broadcast::Sender<AuthChange>, change: AuthChange) {
        let before = cache.generation();
        sender.send(change).unwrap();
        settle(cache, before).await;
    }

    #[tokio::test]
    async fn nothing_answers_fresh_until_the_listener_is_connected() {
        let (cache, clock, sender) = cache().await;
        let now = clock.now_millis();
        cache.put_session(cache.generation(), session("h1", "u1"), identity("u1"), now);
        assert!(
            cache.session("h1", now, Use::Fresh).is_none(),
            "not listening yet"
        );
        assert!(cache.session("h1", now, Use::Stale).is_some());
        notify(&cache, &sender, AuthChange::Listening).await;
        // Connecting forgot everything (notices were lost before).
        assert!(cache.session("h1", now, Use::Stale).is_none());
        cache.put_session(cache.generation(), session("h1", "u1"), identity("u1"), now);
        assert!(cache.session("h1", now, Use::Fresh).is_some());
        notify(&cache, &sender, AuthChange::Lost).await;
        assert!(
            cache.session("h1", now, Use::Fresh).is_none(),
            "lost: not trusted"
        );
        assert!(
            cache.session("h1", now, Use::Stale).is_some(),
            "but kept for outages"
        );
    }

    #[tokio::test]
    async fn entries_age_out_fresh_then_stale() {
        let (cache, clock, sender) = cache().await;
        notify(&cache, &sender, AuthChange::Listening).await;
        let read_at = clock.now_millis();
        cache.put_session(
            cache.generation(),
            session("h1", "u1"),
            identity("u1"),
            read_at,
        );
        assert!(cache.session("h1", read_at + 4_999, Use::Fresh).is_some());
        assert!(cache.session("h1", read_at + 5_000, Use::Fresh).is_none());
        assert!(cache.session("h1", read_at + 59_999, Use::Stale).is_some());
        assert!(cache.session("h1", read_at + 60_000, Use::Stale).is_none());
    }

    #[tokio::test]
    async fn notices_forget_sessions_users_and_keys() {
        let (cache, clock, sender) = cache().await;
        notify(&cache, &sender, AuthChange::Listening).await;
        let now = clock.now_millis();
        for (hash, user) in [("h1", "u1"), ("h2", "u1"), ("h3", "u2")] {
            cache.put_session(cache.generation(), session(hash, user), identity(user), now);
        }
        let key = ApiKeyRecord {
            id: "k1".into(),
            key_hash: "kh".into(),
            user_id: "u2".into(),
            name: "ci".into(),
            scope: Default::default(),
            created_at: 0,
            expires_at: None,
            last_used_at: None,
            revoked_at: None,
        };
        cache.put_key(cache.generation(), key.clone(), identity("u2"), now);
        notify(&cache, &sender, AuthChange::Session("h1".into())).await;
        assert!(cache.session("h1", now, Use::Stale).is_none());
        assert!(cache.session("h2", now, Use::Fresh).is_some());
        notify(&cache, &sender, AuthChange::User("u1".into())).await;
        assert!(cache.session("h2", now, Use::Stale).is_none());
        assert!(cache.session("h3", now, Use::Fresh).is_some());
        assert!(cache.key("k1", now, Use::Fresh).is_some());
        notify(&cache, &sender, AuthChange::ApiKey("k1".into())).await;
        assert!(cache.key("k1", now, Use::Stale).is_none());
        cache.put_key(cache.generation(), key, identity("u2"), now);
        notify(&cache, &sender, AuthChange::User("u2".into())).await;
        assert!(
            cache.key("k1", now, Use::Stale).is_none(),
            "the creator changed"
        );
        assert!(cache.session("h3", now, Use::Stale).is_none());
    }

    #[tokio::test]
    async fn a_read_that_raced_a_notice_is_not_kept() {
        let (cache, clock, sender) = cache().await;
        notify(&cache, &sender, AuthChange::Listening).await;
        let now = clock.now_millis();
        // Read under this generation ...
        let generation = cache.generation();
        // ... while the session ends elsewhere.
        notify(&cache, &sender, AuthChange::Session("h1".into())).await;
        cache.put_session(generation, session("h1", "u1"), identity("u1"), now);
        assert!(cache.session("h1", now, Use::Stale).is_none());
    }

    #[tokio::test]
    async fn a_receiver_that_lagged_forgets_everything() {
        let (cache, clock, sender) = cache().await;
        notify(&cache, &sender, AuthChange::Listening).await;
        let now = clock.now_millis();
        cache.put_session(cache.generation(), session("h1", "u1"), identity("u1"), now);
        // More notices than the channel holds, faster than the follower reads them.
        let before = cache.generation();
        for i in 0..64 {
            let _ = sender.send(AuthChange::Session(format!("other-{i}")));
        }
        settle(&cache, before).await;
        for _ in 0..200 {
            if cache.session("h1", now, Use::Stale).is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("a lagged receiver kept its entries");
    }
}

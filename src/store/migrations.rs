//! The metadata store's schema migrations, for both stores, in one ordered list.
//!
//! Entry `i` of [`MIGRATIONS`] moves a store from schema version `i` to `i + 1`, and carries
//! the SQL for each store: SQLite's (`PRAGMA user_version` records the version) and
//! PostgreSQL's (the `sluice_schema` table does). Both stores refuse a store newer than the
//! list ([`StoreError::TooNew`](super::StoreError::TooNew)). Adding a migration is one step:
//! append one [`Migration`] with both texts, and a conformance test in `store::conformance`
//! for what it adds (the suite runs against both stores).
//!
//! The texts differ only where the engines do: PostgreSQL has BOOLEAN and BIGINT where
//! SQLite stores INTEGER, and PL/pgSQL trigger functions where SQLite has `RAISE` triggers.
//! This module holds SQL text only; running it is each store's (`sqlite::migrate`,
//! `postgres::migrate`), as are the data steps two SQLite migrations need on stores that
//! predate them ([`HISTORY`], [`AUDIT_CHAIN`]).

/// One schema migration, for each store.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Migration {
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// The index of the migration that keeps each revision's content (SQLite fills in the
/// current one after it).
pub(crate) const HISTORY: usize = 3;
/// The index of the migration that hash-chains the audit log (SQLite hashes the entries
/// written before it and puts its triggers back after it).
pub(crate) const AUDIT_CHAIN: usize = 5;

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        sqlite: r#"
    CREATE TABLE datasources (
        name       TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        spec       TEXT NOT NULL,   -- JSON; secret fields hold sealed values only
        updated_at TEXT NOT NULL
    );
    CREATE TABLE apps (
        name       TEXT PRIMARY KEY,
        visibility TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE queries (
        app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        datasource TEXT NOT NULL REFERENCES datasources(name),
        spec       TEXT NOT NULL,   -- JSON
        updated_at TEXT NOT NULL,
        PRIMARY KEY (app, name)
    );
    CREATE TABLE catalog_revisions (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        applied_at TEXT NOT NULL,
        source     TEXT NOT NULL
    );
"#,
        postgres: r#"
    CREATE TABLE datasources (
        name       TEXT PRIMARY KEY,
        kind       TEXT NOT NULL,
        spec       TEXT NOT NULL,   -- JSON; secret fields hold sealed values only
        updated_at TEXT NOT NULL
    );
    CREATE TABLE apps (
        name       TEXT PRIMARY KEY,
        visibility TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE queries (
        app        TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        name       TEXT NOT NULL,
        datasource TEXT NOT NULL REFERENCES datasources(name),
        spec       TEXT NOT NULL,   -- JSON
        updated_at TEXT NOT NULL,
        PRIMARY KEY (app, name)
    );
    -- Ids are assigned by the store (the latest plus one, under the catalog lock), so a
    -- rolled-back apply leaves no gap.
    CREATE TABLE catalog_revisions (
        id         BIGINT PRIMARY KEY,
        applied_at TEXT NOT NULL,
        source     TEXT NOT NULL
    );
"#,
    },
    // Times are Unix seconds. `app_members` has no foreign key to `apps`, because a catalog
    // apply deletes and re-inserts every app and membership must survive it; `audit_events`
    // has none to `users`, because the log outlives accounts.
    Migration {
        sqlite: r#"
    CREATE TABLE users (
        id             TEXT PRIMARY KEY,
        email          TEXT NOT NULL UNIQUE,
        display_name   TEXT NOT NULL,
        role           TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
        "groups"       TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
        disabled       INTEGER NOT NULL DEFAULT 0,
        password_hash  TEXT,
        failed_logins  INTEGER NOT NULL DEFAULT 0,
        locked_until   INTEGER,
        totp_secret    TEXT,                         -- sealed
        mfa_enabled    INTEGER NOT NULL DEFAULT 0,
        totp_last_step INTEGER,
        created_at     INTEGER NOT NULL,
        last_login_at  INTEGER
    );
    CREATE TABLE recovery_codes (
        user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        used_at   INTEGER,
        PRIMARY KEY (user_id, code_hash)
    );
    CREATE TABLE sessions (
        token_hash       TEXT PRIMARY KEY,
        public_id        TEXT NOT NULL UNIQUE,
        user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at       INTEGER NOT NULL,
        last_seen_at     INTEGER NOT NULL,
        authenticated_at INTEGER NOT NULL,
        ip               TEXT NOT NULL,
        user_agent       TEXT NOT NULL
    );
    CREATE INDEX sessions_user_id ON sessions(user_id);
    CREATE TABLE one_time_tokens (
        token_hash TEXT PRIMARY KEY,
        purpose    TEXT NOT NULL,
        user_id    TEXT REFERENCES users(id) ON DELETE CASCADE,
        email      TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at    INTEGER
    );
    CREATE INDEX one_time_tokens_user_id ON one_time_tokens(user_id);
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        key_hash     TEXT NOT NULL,
        user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        scope        TEXT NOT NULL,                  -- JSON
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        last_used_at INTEGER,
        revoked_at   INTEGER
    );
    CREATE INDEX api_keys_user_id ON api_keys(user_id);
    CREATE TABLE app_members (
        app      TEXT NOT NULL,
        user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        added_at INTEGER NOT NULL,
        PRIMARY KEY (app, user_id)
    );
    CREATE INDEX app_members_user_id ON app_members(user_id);
    CREATE TABLE audit_events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        at         INTEGER NOT NULL,
        event      TEXT NOT NULL,
        user_id    TEXT,
        email      TEXT,
        actor      TEXT,
        ip         TEXT,
        user_agent TEXT,
        reason     TEXT,
        details    TEXT
    );
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
    BEGIN
        SELECT RAISE(ABORT, 'audit_events is append-only');
    END;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
    BEGIN
        SELECT RAISE(ABORT, 'audit_events is append-only');
    END;
"#,
        postgres: r#"
    CREATE TABLE users (
        id             TEXT PRIMARY KEY,
        email          TEXT NOT NULL UNIQUE,
        display_name   TEXT NOT NULL,
        role           TEXT NOT NULL CHECK (role IN ('admin', 'developer', 'viewer')),
        "groups"       TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
        disabled       BOOLEAN NOT NULL DEFAULT FALSE,
        password_hash  TEXT,
        failed_logins  BIGINT NOT NULL DEFAULT 0,
        locked_until   BIGINT,
        totp_secret    TEXT,                         -- sealed
        mfa_enabled    BOOLEAN NOT NULL DEFAULT FALSE,
        totp_last_step BIGINT,
        created_at     BIGINT NOT NULL,
        last_login_at  BIGINT
    );
    CREATE TABLE recovery_codes (
        user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        code_hash TEXT NOT NULL,
        used_at   BIGINT,
        PRIMARY KEY (user_id, code_hash)
    );
    CREATE TABLE sessions (
        token_hash       TEXT PRIMARY KEY,
        public_id        TEXT NOT NULL UNIQUE,
        user_id          TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at       BIGINT NOT NULL,
        last_seen_at     BIGINT NOT NULL,
        authenticated_at BIGINT NOT NULL,
        ip               TEXT NOT NULL,
        user_agent       TEXT NOT NULL
    );
    CREATE INDEX sessions_user_id ON sessions(user_id);
    CREATE TABLE one_time_tokens (
        token_hash TEXT PRIMARY KEY,
        purpose    TEXT NOT NULL,
        user_id    TEXT REFERENCES users(id) ON DELETE CASCADE,
        email      TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at    BIGINT
    );
    CREATE INDEX one_time_tokens_user_id ON one_time_tokens(user_id);
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        key_hash     TEXT NOT NULL,
        user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name         TEXT NOT NULL,
        scope        TEXT NOT NULL,                  -- JSON
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT,
        last_used_at BIGINT,
        revoked_at   BIGINT
    );
    CREATE INDEX api_keys_user_id ON api_keys(user_id);
    CREATE TABLE app_members (
        app      TEXT NOT NULL,
        user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        added_at BIGINT NOT NULL,
        PRIMARY KEY (app, user_id)
    );
    CREATE INDEX app_members_user_id ON app_members(user_id);
    CREATE TABLE audit_events (
        id         BIGINT PRIMARY KEY,
        at         BIGINT NOT NULL,
        event      TEXT NOT NULL,
        user_id    TEXT,
        email      TEXT,
        actor      TEXT,
        ip         TEXT,
        user_agent TEXT,
        reason     TEXT,
        details    TEXT
    );
    CREATE FUNCTION sluice_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'P0001';
    END $$;
    CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION sluice_append_only();
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION sluice_append_only();
    CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION sluice_append_only();
"#,
    },
    Migration {
        sqlite: r#"
    ALTER TABLE apps ADD COLUMN spec TEXT;
"#,
        postgres: r#"
    ALTER TABLE apps ADD COLUMN spec TEXT;
"#,
    },
    // Each revision keeps the whole catalog (JSON, secrets sealed) for `catalog history`,
    // `diff` and `rollback`. On SQLite, older revisions keep none, except the current one,
    // which the store fills in after this migration ([`HISTORY`]).
    Migration {
        sqlite: r#"
    ALTER TABLE catalog_revisions ADD COLUMN spec TEXT;
"#,
        postgres: r#"
    ALTER TABLE catalog_revisions ADD COLUMN spec TEXT;
"#,
    },
    // A member with `editor` may edit the app's settings and queries through the catalog
    // API (developers only; see `admin::catalog`).
    Migration {
        sqlite: r#"
    ALTER TABLE app_members ADD COLUMN editor INTEGER NOT NULL DEFAULT 0;
"#,
        postgres: r#"
    ALTER TABLE app_members ADD COLUMN editor BOOLEAN NOT NULL DEFAULT FALSE;
"#,
    },
    // On SQLite the existing entries are hashed after this migration and the triggers put
    // back ([`AUDIT_CHAIN`]); PostgreSQL gets its triggers here.
    Migration {
        sqlite: r#"
    ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
    ALTER TABLE audit_events ADD COLUMN hash TEXT;
    CREATE TABLE audit_chain (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        anchor_id   INTEGER NOT NULL,   -- the last entry pruned (0: none)
        anchor_hash TEXT NOT NULL,      -- its hash, where the chain starts
        anchor_at   INTEGER,            -- when entries were last pruned
        head_id     INTEGER NOT NULL,   -- the newest entry (0: none)
        head_hash   TEXT NOT NULL
    );
    CREATE TABLE audit_export_cursors (
        sink    TEXT PRIMARY KEY,
        last_id INTEGER NOT NULL
    );
    CREATE INDEX audit_events_at ON audit_events(at);
    CREATE INDEX audit_events_event ON audit_events(event, id);
    CREATE INDEX audit_events_user_id ON audit_events(user_id, id);
    CREATE INDEX audit_events_actor ON audit_events(actor, id);
    DROP TRIGGER audit_events_no_update;
    DROP TRIGGER audit_events_no_delete;
"#,
        postgres: r#"
    ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
    ALTER TABLE audit_events ADD COLUMN hash TEXT;
    CREATE TABLE audit_chain (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        anchor_id   BIGINT NOT NULL,   -- the last entry pruned (0: none)
        anchor_hash TEXT NOT NULL,     -- its hash, where the chain starts
        anchor_at   BIGINT,            -- when entries were last pruned
        head_id     BIGINT NOT NULL,   -- the newest entry (0: none)
        head_hash   TEXT NOT NULL
    );
    CREATE TABLE audit_export_cursors (
        sink    TEXT PRIMARY KEY,
        last_id BIGINT NOT NULL
    );
    CREATE INDEX audit_events_at ON audit_events(at);
    CREATE INDEX audit_events_event ON audit_events(event, id);
    CREATE INDEX audit_events_user_id ON audit_events(user_id, id);
    CREATE INDEX audit_events_actor ON audit_events(actor, id);
    -- A PostgreSQL store is created by a build that chains from its first entry, so the log
    -- is empty here and the chain starts at the genesis hash.
    INSERT INTO audit_chain (id, anchor_id, anchor_hash, anchor_at, head_id, head_hash)
    VALUES (1, 0, repeat('0', 64), NULL, 0, repeat('0', 64));
    DROP TRIGGER audit_events_no_delete ON audit_events;
    -- Entries are deleted only at or below the anchor, which only retention moves (forward,
    -- in the same transaction as the deletion); appended only with their hash, after the head.
    CREATE FUNCTION sluice_audit_delete() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF OLD.id > coalesce((SELECT anchor_id FROM audit_chain WHERE id = 1), -1) THEN
            RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'P0001';
        END IF;
        RETURN OLD;
    END $$;
    CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION sluice_audit_delete();
    CREATE FUNCTION sluice_audit_append() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.hash IS NULL OR NEW.prev_hash IS NULL
            OR NEW.id <= coalesce((SELECT head_id FROM audit_chain WHERE id = 1), 0) THEN
            RAISE EXCEPTION 'audit_events is append-only: entries are appended with their hash, after the head'
                USING ERRCODE = 'P0001';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER audit_events_append BEFORE INSERT ON audit_events
        FOR EACH ROW EXECUTE FUNCTION sluice_audit_append();
    CREATE FUNCTION sluice_audit_chain_forward() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.anchor_id < OLD.anchor_id OR NEW.head_id < OLD.head_id
            OR NEW.anchor_id > NEW.head_id OR NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'the audit chain only moves forward' USING ERRCODE = 'P0001';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER audit_chain_forward BEFORE UPDATE ON audit_chain
        FOR EACH ROW EXECUTE FUNCTION sluice_audit_chain_forward();
    CREATE FUNCTION sluice_audit_chain_kept() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'the audit chain state is kept' USING ERRCODE = 'P0001';
    END $$;
    CREATE TRIGGER audit_chain_kept BEFORE DELETE ON audit_chain
        FOR EACH ROW EXECUTE FUNCTION sluice_audit_chain_kept();
    CREATE TRIGGER audit_chain_no_truncate BEFORE TRUNCATE ON audit_chain
        FOR EACH STATEMENT EXECUTE FUNCTION sluice_audit_chain_kept();
"#,
    },
    // Federated identities (`identities`): provider accounts linked to users, one per
    // (provider, subject), and the OpenID Connect sign-ins under way (each taken once).
    Migration {
        sqlite: r#"
    CREATE TABLE user_identities (
        provider        TEXT NOT NULL,
        subject         TEXT NOT NULL,
        user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        email           TEXT,
        linked_at       INTEGER NOT NULL,
        last_sign_in_at INTEGER,
        PRIMARY KEY (provider, subject)
    );
    CREATE INDEX user_identities_user ON user_identities (user_id);
    CREATE TABLE sso_flows (
        state_hash    TEXT PRIMARY KEY,   -- SHA-256 of the state sent to the provider
        provider      TEXT NOT NULL,
        nonce         TEXT NOT NULL,
        verifier_hash TEXT NOT NULL,      -- SHA-256 of the PKCE verifier (in the browser)
        return_to     TEXT NOT NULL,
        link_user     TEXT,
        expires_at    INTEGER NOT NULL
    );
"#,
        postgres: r#"
    CREATE TABLE user_identities (
        provider        TEXT NOT NULL,
        subject         TEXT NOT NULL,
        user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        email           TEXT,
        linked_at       BIGINT NOT NULL,
        last_sign_in_at BIGINT,
        PRIMARY KEY (provider, subject)
    );
    CREATE INDEX user_identities_user ON user_identities (user_id);
    CREATE TABLE sso_flows (
        state_hash    TEXT PRIMARY KEY,
        provider      TEXT NOT NULL,
        nonce         TEXT NOT NULL,
        verifier_hash TEXT NOT NULL,
        return_to     TEXT NOT NULL,
        link_user     TEXT,
        expires_at    BIGINT NOT NULL
    );
"#,
    },
    // SCIM provisioning (`scim`): an IdP's profile of an account beside `users` (a SCIM
    // user is an account; `deleted_at` set: SCIM deleted it and answers 404, the disabled
    // account stays for the audit log), and SCIM groups, mirrored into their members'
    // `users.groups` under `group_name`.
    Migration {
        sqlite: r#"
    CREATE TABLE scim_users (
        user_id     TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        external_id TEXT UNIQUE,
        user_name   TEXT NOT NULL,
        given_name  TEXT,
        family_name TEXT,
        formatted   TEXT,
        deleted_at  INTEGER,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE scim_groups (
        id           TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        group_name   TEXT NOT NULL UNIQUE,
        external_id  TEXT UNIQUE,
        created_at   INTEGER NOT NULL,
        updated_at   INTEGER NOT NULL
    );
    CREATE TABLE scim_group_members (
        group_id TEXT NOT NULL REFERENCES scim_groups(id) ON DELETE CASCADE,
        user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, user_id)
    );
    CREATE INDEX scim_group_members_user_id ON scim_group_members(user_id);
"#,
        postgres: r#"
    CREATE TABLE scim_users (
        user_id     TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        external_id TEXT UNIQUE,
        user_name   TEXT NOT NULL,
        given_name  TEXT,
        family_name TEXT,
        formatted   TEXT,
        deleted_at  BIGINT,
        updated_at  BIGINT NOT NULL
    );
    CREATE TABLE scim_groups (
        id           TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        group_name   TEXT NOT NULL UNIQUE,
        external_id  TEXT UNIQUE,
        created_at   BIGINT NOT NULL,
        updated_at   BIGINT NOT NULL
    );
    CREATE TABLE scim_group_members (
        group_id TEXT NOT NULL REFERENCES scim_groups(id) ON DELETE CASCADE,
        user_id  TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        PRIMARY KEY (group_id, user_id)
    );
    CREATE INDEX scim_group_members_user_id ON scim_group_members(user_id);
"#,
    },
    // 8: what several replicas on one PostgreSQL store share beyond the tables (nothing on
    // SQLite, one node): the rate-limit buckets (`store::buckets`; UNLOGGED, a bucket is not
    // worth a WAL write) with the function that takes a token in one locked step, and the
    // triggers that announce a deleted session, a changed user or a changed API key on the
    // `sluice_auth` channel, whoever changes them, so each replica's cache of sessions and
    // keys forgets them at once (`postgres::listen`).
    Migration {
        sqlite: r#"
    -- Nothing: one node keeps its rate-limit buckets in memory and caches no sessions.
"#,
        postgres: r#"
    CREATE UNLOGGED TABLE rate_buckets (
        key        TEXT PRIMARY KEY,
        tokens     DOUBLE PRECISION NOT NULL,
        updated_ms BIGINT NOT NULL,
        full_at_ms BIGINT NOT NULL
    );
    CREATE INDEX rate_buckets_full_at_ms ON rate_buckets (full_at_ms);
    CREATE FUNCTION sluice_take_token(
        p_key TEXT, p_burst DOUBLE PRECISION, p_rate DOUBLE PRECISION, p_now BIGINT,
        OUT allowed BOOLEAN, OUT tokens DOUBLE PRECISION
    ) LANGUAGE plpgsql AS $$
    DECLARE
        t DOUBLE PRECISION;
        u BIGINT;
    BEGIN
        INSERT INTO rate_buckets (key, tokens, updated_ms, full_at_ms)
            VALUES (p_key, p_burst, p_now, p_now)
            ON CONFLICT (key) DO NOTHING;
        SELECT b.tokens, b.updated_ms INTO t, u FROM rate_buckets b WHERE b.key = p_key FOR UPDATE;
        IF NOT FOUND THEN
            -- Pruned meanwhile: a pruned bucket was full.
            t := p_burst;
            u := p_now;
        END IF;
        -- A clock behind the last update adds nothing and removes nothing.
        t := LEAST(p_burst, t + GREATEST(p_now - u, 0) / 1000.0 * p_rate);
        u := GREATEST(u, p_now);
        allowed := t >= 1 - 1e-9;
        IF allowed THEN
            t := GREATEST(t - 1, 0);
        END IF;
        tokens := t;
        INSERT INTO rate_buckets (key, tokens, updated_ms, full_at_ms)
            VALUES (p_key, t, u, u + CASE WHEN p_rate > 0
                THEN LEAST(CEIL((p_burst - t) / p_rate * 1000), 86400000)::BIGINT
                ELSE 86400000 END)
            ON CONFLICT (key) DO UPDATE SET tokens = EXCLUDED.tokens,
                updated_ms = EXCLUDED.updated_ms, full_at_ms = EXCLUDED.full_at_ms;
    END
    $$;
    CREATE FUNCTION sluice_auth_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_TABLE_NAME = 'sessions' THEN
            PERFORM pg_notify('sluice_auth', 's:' || OLD.token_hash);
        ELSIF TG_TABLE_NAME = 'users' THEN
            PERFORM pg_notify('sluice_auth', 'u:' || OLD.id);
        ELSIF TG_TABLE_NAME = 'api_keys' THEN
            PERFORM pg_notify('sluice_auth', 'k:' || OLD.id);
        END IF;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER sessions_notify AFTER DELETE ON sessions
        FOR EACH ROW EXECUTE FUNCTION sluice_auth_notify();
    -- What a cached session or key carries of its account (the identity, whether it is
    -- enabled); sign-in bookkeeping (failed_logins, last_login_at, ...) announces nothing.
    CREATE TRIGGER users_notify
        AFTER UPDATE OF email, role, "groups", disabled, mfa_enabled OR DELETE ON users
        FOR EACH ROW EXECUTE FUNCTION sluice_auth_notify();
    CREATE TRIGGER api_keys_notify
        AFTER UPDATE OF key_hash, user_id, scope, expires_at, revoked_at OR DELETE ON api_keys
        FOR EACH ROW EXECUTE FUNCTION sluice_auth_notify();
"#,
    },
    // 9: SCIM profiles keep what the IdP set as it set it: the SCIM `displayName` (NULL: none,
    // or removed; profiles written before this take the account's), every email as a JSON
    // list (NULL: written before this, SCIM shows the account's email), and whether the
    // IdP removed `active`. It only adds columns.
    Migration {
        sqlite: r#"
    ALTER TABLE scim_users ADD COLUMN display_name TEXT;
    ALTER TABLE scim_users ADD COLUMN emails TEXT;
    ALTER TABLE scim_users ADD COLUMN active_removed INTEGER NOT NULL DEFAULT 0;
    UPDATE scim_users SET display_name =
        (SELECT u.display_name FROM users u WHERE u.id = scim_users.user_id);
"#,
        postgres: r#"
    ALTER TABLE scim_users ADD COLUMN display_name TEXT;
    ALTER TABLE scim_users ADD COLUMN emails TEXT;
    ALTER TABLE scim_users ADD COLUMN active_removed BOOLEAN NOT NULL DEFAULT FALSE;
    UPDATE scim_users SET display_name =
        (SELECT u.display_name FROM users u WHERE u.id = scim_users.user_id);
"#,
    },
];

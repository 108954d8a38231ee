-- no-transaction
-- `revoked`: the user withdrew the app at the platform (Meta's deauthorize callback, TikTok's
-- authorization.removed). Like `reauth_required` the account needs a new connect, but the status
-- says the user chose this, so the frontend asks rather than apologises.
--
-- SQLite cannot alter a CHECK constraint, so the table is rebuilt (SQLite's documented
-- procedure, https://www.sqlite.org/lang_altertable.html#otheralter): foreign keys off, so that
-- dropping the old table does not cascade into snapshots and posts — which is why this migration
-- manages its own transaction. Ids are kept, and so is the AUTOINCREMENT high-water mark, so
-- no id that history names is ever handed out again.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;

CREATE TABLE social_accounts_rebuilt (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             TEXT    NOT NULL,
    platform            TEXT    NOT NULL CHECK (platform IN ('instagram', 'tiktok')),
    platform_user_id    TEXT    NOT NULL,
    username            TEXT    NOT NULL DEFAULT '',
    display_name        TEXT,
    status              TEXT    NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'reauth_required', 'revoked', 'disconnected')),
    status_changed_at   BIGINT  NOT NULL,
    scopes              TEXT    NOT NULL DEFAULT '',
    access_token_enc    TEXT,
    refresh_token_enc   TEXT,
    access_expires_at   BIGINT,
    refresh_expires_at  BIGINT,
    token_issued_at     BIGINT,
    last_refreshed_at   BIGINT,
    next_refresh_at     BIGINT,
    last_refresh_error  TEXT,
    last_synced_at      BIGINT,
    last_sync_error     TEXT,
    lease_owner         TEXT,
    lease_expires_at    BIGINT,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL,
    status_reason       TEXT,
    UNIQUE (platform, platform_user_id)
);

INSERT INTO social_accounts_rebuilt (
    id, user_id, platform, platform_user_id, username, display_name,
    status, status_changed_at, scopes, access_token_enc, refresh_token_enc, access_expires_at,
    refresh_expires_at, token_issued_at, last_refreshed_at, next_refresh_at, last_refresh_error,
    last_synced_at, last_sync_error, lease_owner, lease_expires_at, created_at, updated_at, status_reason)
SELECT
    id, user_id, platform, platform_user_id, username, display_name,
    CASE WHEN status = 'reauth_required' AND last_refresh_error = 'revoked' THEN 'revoked' ELSE status END,
    status_changed_at, scopes, access_token_enc, refresh_token_enc, access_expires_at,
    refresh_expires_at, token_issued_at, last_refreshed_at, next_refresh_at, last_refresh_error,
    last_synced_at, last_sync_error, lease_owner, lease_expires_at, created_at, updated_at, status_reason
FROM social_accounts;
DELETE FROM sqlite_sequence WHERE name = 'social_accounts_rebuilt';
INSERT INTO sqlite_sequence (name, seq) SELECT 'social_accounts_rebuilt', seq FROM sqlite_sequence WHERE name = 'social_accounts';

DROP TABLE social_accounts;
ALTER TABLE social_accounts_rebuilt RENAME TO social_accounts;
CREATE INDEX social_accounts_user ON social_accounts (user_id);
CREATE INDEX social_accounts_refresh_due ON social_accounts (status, access_expires_at);
CREATE INDEX social_accounts_sync_stale ON social_accounts (status, last_synced_at);

COMMIT;
PRAGMA foreign_keys = ON;

-- socialsync's domain tables (SQLite). Instants are BIGINT milliseconds since the Unix
-- epoch, as on PostgreSQL, so both backends share one SQL text; see ARCHITECTURE.md.

CREATE TABLE social_accounts (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             TEXT    NOT NULL,
    platform            TEXT    NOT NULL CHECK (platform IN ('instagram', 'tiktok')),
    platform_user_id    TEXT    NOT NULL,
    username            TEXT    NOT NULL DEFAULT '',
    display_name        TEXT,
    status              TEXT    NOT NULL DEFAULT 'active'
                        CHECK (status IN ('active', 'reauth_required', 'disconnected')),
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
    UNIQUE (platform, platform_user_id)
);
CREATE INDEX social_accounts_user ON social_accounts (user_id);
CREATE INDEX social_accounts_refresh_due ON social_accounts (status, access_expires_at);
CREATE INDEX social_accounts_sync_stale ON social_accounts (status, last_synced_at);

CREATE TABLE oauth_states (
    state_hash          TEXT    PRIMARY KEY,
    user_id             TEXT    NOT NULL,
    platform            TEXT    NOT NULL,
    pkce_verifier_enc   TEXT,
    redirect_to         TEXT,
    created_at          BIGINT  NOT NULL,
    expires_at          BIGINT  NOT NULL,
    used_at             BIGINT,
    code_enc            TEXT
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);

CREATE TABLE account_snapshots (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id          BIGINT  NOT NULL REFERENCES social_accounts (id) ON DELETE CASCADE,
    taken_at            BIGINT  NOT NULL,
    followers_count     BIGINT,
    following_count     BIGINT,
    media_count         BIGINT,
    likes_count         BIGINT
);
CREATE INDEX account_snapshots_account ON account_snapshots (account_id, taken_at);

CREATE TABLE posts (
    account_id          BIGINT  NOT NULL REFERENCES social_accounts (id) ON DELETE CASCADE,
    platform_post_id    TEXT    NOT NULL,
    caption             TEXT,
    media_type          TEXT,
    permalink           TEXT,
    thumbnail_url       TEXT,
    published_at        BIGINT,
    like_count          BIGINT,
    comment_count       BIGINT,
    view_count          BIGINT,
    share_count         BIGINT,
    updated_at          BIGINT  NOT NULL,
    PRIMARY KEY (account_id, platform_post_id)
);
CREATE INDEX posts_published ON posts (account_id, published_at);

CREATE TABLE notifications (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id             TEXT    NOT NULL,
    account_id          BIGINT  REFERENCES social_accounts (id) ON DELETE SET NULL,
    kind                TEXT    NOT NULL,
    payload             TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    delivered_at        BIGINT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT
);
CREATE INDEX notifications_user ON notifications (user_id, created_at);
CREATE INDEX notifications_undelivered ON notifications (created_at) WHERE delivered_at IS NULL;

CREATE TABLE cron_runs (
    schedule            TEXT    NOT NULL,
    fire_at             BIGINT  NOT NULL,
    claimed_by          TEXT    NOT NULL,
    claimed_at          BIGINT  NOT NULL,
    finished_at         BIGINT,
    jobs_enqueued       BIGINT,
    outcome             TEXT,
    PRIMARY KEY (schedule, fire_at)
);

CREATE TABLE pacing_gates (
    key                 TEXT    PRIMARY KEY,
    next_at             BIGINT  NOT NULL
);

CREATE TABLE rate_limit_counters (
    key                 TEXT    NOT NULL,
    window_start        BIGINT  NOT NULL,
    count               BIGINT  NOT NULL,
    expires_at          BIGINT  NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limit_counters_expires ON rate_limit_counters (expires_at);

CREATE TABLE job_runs (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    queue               TEXT    NOT NULL,
    job_id              TEXT    NOT NULL,
    account_id          BIGINT,
    attempt             INTEGER NOT NULL,
    worker              TEXT    NOT NULL,
    started_at          BIGINT  NOT NULL,
    finished_at         BIGINT,
    outcome             TEXT,
    error_class         TEXT,
    error               TEXT
);
CREATE INDEX job_runs_job ON job_runs (job_id);
CREATE INDEX job_runs_queue_started ON job_runs (queue, started_at);
CREATE INDEX job_runs_account ON job_runs (account_id, started_at);

-- What the platforms tell the app on their own (a user revoking it, or asking for their data to
-- be deleted): each verified event is written here by the API before it answers, and applied by
-- an `event` job. `event_key` (the SHA-256 of a key naming the platform, the event and the
-- user) makes a redelivered event the same row.
CREATE TABLE platform_events (
    id                  BIGSERIAL PRIMARY KEY,
    platform            TEXT    NOT NULL,
    kind                TEXT    NOT NULL,
    platform_user_id    TEXT    NOT NULL,
    reason              TEXT,
    event_key           TEXT    NOT NULL UNIQUE,
    issued_at           BIGINT  NOT NULL,
    received_at         BIGINT  NOT NULL,
    -- A data deletion's code, the key of its public status page.
    confirmation_code   TEXT    UNIQUE,
    started_at          BIGINT,
    processed_at        BIGINT
);

-- Why the account left `active`, in words the user can read (e.g. "the user disconnected the app
-- in TikTok"); cleared when it is connected again.
ALTER TABLE social_accounts ADD COLUMN status_reason TEXT;

-- A queue's concurrency set live by ops (jobs::store::concurrency): attempts at once per worker
-- process, in place of the process's configured `*_CONCURRENCY`, until reset. Workers read it
-- with the pauses (every poll, and on PostgreSQL at each announcement on `socialsync_pauses`).
CREATE TABLE queue_concurrency (
    queue               TEXT    PRIMARY KEY,
    concurrency         INTEGER NOT NULL CHECK (concurrency > 0),
    set_by              TEXT    NOT NULL,
    set_at              BIGINT  NOT NULL
);

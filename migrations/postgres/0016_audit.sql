-- The audit trail (jobs::store::audit): every ops action — on the dashboard or from the
-- command line — and every dashboard sign-in, successful or not: who, when, what, on which
-- job, filter, account or scope, and how it ended. Only ever appended; the pruner deletes
-- rows past their retention (`RETAIN_AUDIT`) through `audit_log_at`.
CREATE TABLE audit_log (
    id                  BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                  BIGINT  NOT NULL,
    actor               TEXT    NOT NULL,   -- an OPS_USERS name, "ops" (the shared password), "ana (cli)"
    action              TEXT    NOT NULL,   -- jobs.retry, pause, account.sync, sign_in.failed, …
    target              TEXT    NOT NULL,   -- "job 01J…", "queue=sync state=dead (3 jobs)", "queue:sync:tiktok"
    outcome             TEXT    NOT NULL    -- "ok: …", "refused: …", "failed: …"
);
CREATE INDEX audit_log_at ON audit_log (at);

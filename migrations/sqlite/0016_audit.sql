-- The audit trail (jobs::store::audit): every ops action — on the dashboard or from the
-- command line — and every dashboard sign-in, successful or not: who, when, what, on which
-- job, filter, account or scope, and how it ended. Only ever appended; the pruner deletes
-- rows past their retention (`RETAIN_AUDIT`) through `audit_log_at`.
CREATE TABLE audit_log (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    at                  BIGINT  NOT NULL,
    actor               TEXT    NOT NULL,
    action              TEXT    NOT NULL,
    target              TEXT    NOT NULL,
    outcome             TEXT    NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);

-- A lean queue table, the least a PostgreSQL queue with claims and completions writes: one
-- index besides the key, partial on the due rows; 200 000 due jobs. Not socialsync's schema:
-- the reference for what this machine's PostgreSQL gives any such queue (BENCHMARKS.md,
-- "Findings").
CREATE TABLE lean_jobs (id bigserial PRIMARY KEY, queue text NOT NULL, payload jsonb NOT NULL, status smallint NOT NULL DEFAULT 0, run_at timestamptz NOT NULL DEFAULT now(), locked_by text);
CREATE INDEX lean_due ON lean_jobs (queue, run_at) WHERE status = 0;
INSERT INTO lean_jobs (queue, payload, run_at)
SELECT 'sync', jsonb_build_object('account_id', g, 'reason', 'manual'), now() - interval '1 s' FROM generate_series(1, 200000) g;

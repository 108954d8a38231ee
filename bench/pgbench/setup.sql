-- 200 000 due syncs and 64 live queue workers ('w0' … 'w63', pgbench's client ids), as the
-- throughput benchmark enqueues them (fresh rows: no VACUUM, no ANALYZE).
INSERT INTO apalis.workers (id, worker_type, storage_name, layers, last_seen)
SELECT 'w' || g, 'sync', 'pgbench', '', now() + interval '1 day' FROM generate_series(0, 63) g;
INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, dedup_key)
SELECT '01K' || lpad(g::text, 23, '0'), 'sync', convert_to('{"account_id":' || g || ',"reason":"manual"}', 'UTF8'),
       'Pending', 0, 5, now() - interval '1 s', 0, 'sync:' || g
FROM generate_series(1, 200000) g;

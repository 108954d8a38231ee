-- PostgreSQL only (there apalis' acknowledgement keeps `lock_by` on finished jobs, and its
-- queries by worker read them all through the `lock_by` index). Kept so both backends carry
-- the same migration versions.
SELECT 1;

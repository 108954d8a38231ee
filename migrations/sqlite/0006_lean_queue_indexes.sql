-- PostgreSQL only (apalis' table there carries duplicate and full indexes that every job's
-- claim and end write to). Kept so both backends carry the same migration versions.
SELECT 1;

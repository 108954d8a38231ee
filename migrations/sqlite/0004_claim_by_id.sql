-- PostgreSQL only (apalis' `get_jobs` function there is replaced); SQLite's claim is a plain
-- statement inside apalis-sqlite. Kept so both backends carry the same migration versions.
SELECT 1;

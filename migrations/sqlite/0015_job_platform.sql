-- PostgreSQL only (its claim passes over a paused platform's jobs by their `platform`);
-- SQLite's claim is a plain statement inside apalis-sqlite, and its worker holds a paused
-- platform's fetched jobs instead (worker::queues). Kept so both backends carry the same
-- migration versions.
SELECT 1;

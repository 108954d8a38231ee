-- PostgreSQL only (there, apalis' foreign key from a job's lock to its worker was checked row
-- by row at every claim). Kept so both backends carry the same migration versions.
SELECT 1;

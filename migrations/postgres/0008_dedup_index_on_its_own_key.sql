-- The dedup index is keyed on one expression, `job_type || ' ' || dedup_key`, that no other
-- index has, so a look-up by it has exactly one index path whatever the table's statistics.
--
-- Why: keyed on (job_type, dedup_key), the look-up `job_type = … AND dedup_key = … AND status =
-- 'Pending' …` could also be served by apalis' claim index (`job_type`, …) with the key as a
-- filter. On a table never analysed both are estimated at one row and the claim index was
-- chosen from about 1 000 waiting jobs on, reading every waiting row of the queue: 10.6 ms a
-- look-up and about 107 enqueues a second at 150 000 waiting (BENCHMARKS.md, "Findings").
-- Now the claim index can only be scanned whole, which no estimate makes cheaper than this one.
--
-- Queue names are identifiers without spaces, so the joined key is unambiguous. The index only
-- holds jobs waiting for their first run, so building it is quick even on a large table; the
-- old one stays until the new one exists, in one transaction, so uniqueness never lapses.
CREATE UNIQUE INDEX socialsync_jobs_dedup_key ON apalis.jobs ((job_type || ' ' || dedup_key))
    WHERE dedup_key IS NOT NULL
      AND status = 'Pending' AND attempts = 0;
DROP INDEX apalis.socialsync_jobs_dedup;

-- A job about one account carries its account's platform (jobs::pauses): ops may pause one
-- platform's syncs or refreshes, and the claim then passes over that platform's jobs by this
-- column, without reading payloads or joining accounts. Set at enqueue (jobs::store::queue);
-- NULL for jobs about no account. An account's platform never changes.
ALTER TABLE apalis.jobs ADD COLUMN IF NOT EXISTS platform TEXT;

-- The jobs already waiting or running, so that a pause right after the upgrade holds them too.
-- Their payloads are socialsync's JSON (`{"account_id":42,…}`); read by pattern, so a payload
-- that is not JSON is left alone rather than failing the upgrade.
UPDATE apalis.jobs j SET platform = a.platform
FROM social_accounts a
WHERE j.status IN ('Pending', 'Queued', 'Running', 'Failed')
  AND j.platform IS NULL
  AND a.id = substring(convert_from(j.job, 'UTF8') FROM '"account_id":\s*([0-9]{1,18})')::bigint;

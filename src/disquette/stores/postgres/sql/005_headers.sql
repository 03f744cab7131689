-- Migration 5 of the PostgreSQL store: each job's headers.
--
-- A json column (not jsonb: json keeps the text as given, so the keys come back in the
-- order they were added, as on every other store), NULL when the job has none: a job
-- without headers costs nothing more. Adding a nullable column with no default rewrites
-- neither table. Processes of the previous version go on working during the upgrade: their
-- statements name their columns, and their claim (migration 3's) returns a fixed row type.
ALTER TABLE {schema}.jobs ADD COLUMN headers json;
ALTER TABLE {schema}.done ADD COLUMN headers json;

-- The claim of migration 3, returning the headers too. A new name, since a function's
-- result type cannot change under the previous version's processes, which prepared
-- statements calling claim(text[], integer, float8, text); that one stays as it is.
CREATE FUNCTION {schema}.claim_jobs(p_queues text[], p_count integer, p_now float8,
                                    p_holder text)
RETURNS TABLE (
    id text, queue text, body bytea, encoding smallint, type text, priority integer,
    state smallint, created_at float8, run_at float8, retry_after float8,
    expires_at float8, max_attempts integer, result_ttl float8, attempts integer,
    nacks integer, additional_deliveries integer, error_count integer, last_error text,
    lease_until float8, result bytea, result_encoding smallint, finished_at float8,
    headers json, seq bigint)
LANGUAGE plpgsql
SET enable_sort = off  -- see maintain()
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    wanted integer := p_count;
    taken integer;
    q text;
BEGIN
    PERFORM {schema}.maintain(p_now);
    FOREACH q IN ARRAY p_queues LOOP
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM {schema}.paused_queues AS p WHERE p.queue = q AND p.mode & 2 <> 0);
        RETURN QUERY
        WITH leased AS (
            UPDATE {schema}.jobs AS j
            SET state = 2, attempts = j.attempts + 1, leased_at = p_now,
                lease_until = CASE WHEN j.retry_after > 0 THEN p_now + j.retry_after END
            WHERE j.ctid = ANY(ARRAY(
                SELECT r.ctid FROM {schema}.jobs AS r
                WHERE r.queue = q AND r.state = 1
                ORDER BY r.priority, r.run_at, r.seq
                LIMIT wanted
                FOR UPDATE SKIP LOCKED))
            RETURNING j.id, j.queue, j.body, j.encoding, j.type, j.priority, j.state,
                      j.created_at, j.run_at, j.retry_after, j.expires_at, j.max_attempts,
                      j.result_ttl, j.attempts, j.nacks, j.additional_deliveries,
                      j.error_count, j.last_error, j.lease_until, j.result,
                      j.result_encoding, j.finished_at, j.headers, j.seq),
        held AS (
            INSERT INTO {schema}.holders AS h (id, holder, attempts)
            SELECT l.id, p_holder, l.attempts FROM leased AS l WHERE p_holder IS NOT NULL
            ON CONFLICT (id) DO UPDATE SET holder = excluded.holder,
                                          attempts = excluded.attempts)
        SELECT * FROM leased;
        GET DIAGNOSTICS taken = ROW_COUNT;
        wanted := wanted - taken;
        EXIT WHEN wanted <= 0;
    END LOOP;
END
$$;

-- Migration 3 of the PostgreSQL store: the holder of each lease.
--
-- A claim may name the process its leases go to (a worker process under a supervisor),
-- so that the supervisor can give a dead process's jobs back at once (release_holder in
-- queries.sql) instead of waiting for their leases to run out. Only the claim and DEQUEUE
-- put a job in state 2, and both set holder, so it means something exactly while a job is
-- active. release_holder finds a holder's jobs through the jobs_leases index (active jobs
-- only): no index is added to what every claim and ack maintain.
ALTER TABLE {schema}.jobs ADD COLUMN holder text;

-- The claim of migration 2, now recording p_holder (NULL: nobody in particular).
CREATE FUNCTION {schema}.claim(p_queues text[], p_count integer, p_now float8, p_holder text)
RETURNS SETOF {schema}.jobs
LANGUAGE plpgsql
SET enable_sort = off  -- see maintain()
SET enable_seqscan = off
AS $$
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
            SET state = 2, attempts = j.attempts + 1, leased_at = p_now, holder = p_holder,
                lease_until = CASE WHEN j.retry_after > 0 THEN p_now + j.retry_after END
            WHERE j.ctid = ANY(ARRAY(
                SELECT r.ctid FROM {schema}.jobs AS r
                WHERE r.queue = q AND r.state = 1
                ORDER BY r.priority, r.run_at, r.seq
                LIMIT wanted
                FOR UPDATE SKIP LOCKED))
            RETURNING j.*)
        SELECT * FROM leased;
        GET DIAGNOSTICS taken = ROW_COUNT;
        wanted := wanted - taken;
        EXIT WHEN wanted <= 0;
    END LOOP;
END
$$;

-- The three-argument claim stays for processes of the previous version during an upgrade.
CREATE OR REPLACE FUNCTION {schema}.claim(p_queues text[], p_count integer, p_now float8)
RETURNS SETOF {schema}.jobs
LANGUAGE sql
AS $$
    SELECT * FROM {schema}.claim(p_queues, p_count, p_now, NULL::text);
$$;

-- Migration 3 of the PostgreSQL store: the holder of each lease.
--
-- A claim may name the process its leases go to (a worker process under a supervisor),
-- so that the supervisor can give a dead process's jobs back at once (release_holder in
-- queries.sql) instead of waiting for their leases to run out.
--
-- The holder lives in a table of its own, not in a column of jobs: adding a column changes
-- the row type the previous version's claim returns (SETOF jobs), and PostgreSQL then
-- refuses every statement such a running process prepared ("cached plan must not change
-- result type") until it restarts. The jobs table keeps its row type, so those processes
-- keep claiming through the three-argument claim of migration 2 during an upgrade.
--
-- A row says: the claim of the delivery whose attempts are "attempts" leased the job to
-- "holder". It is only written by a claim that names a holder (no cost otherwise), and it
-- is right exactly while the job's attempts still equal it: every later claim, by this
-- version or an older one, increments attempts, and DEQUEUE deletes the row. Rows that no
-- longer match are pruned (prune_holders in queries.sql) and by release_holder.
CREATE TABLE {schema}.holders (
    id text COLLATE "C" PRIMARY KEY,
    holder text COLLATE "C" NOT NULL,
    attempts integer NOT NULL
) WITH (autovacuum_vacuum_cost_delay = 0);
CREATE INDEX holders_holder ON {schema}.holders (holder);

-- The claim of migration 2, now recording p_holder (NULL: nobody in particular). It
-- returns the columns the store reads, named, so that a column added to jobs later does
-- not change what it returns (see above).
CREATE FUNCTION {schema}.claim(p_queues text[], p_count integer, p_now float8, p_holder text)
RETURNS TABLE (
    id text, queue text, body bytea, encoding smallint, type text, priority integer,
    state smallint, created_at float8, run_at float8, retry_after float8,
    expires_at float8, max_attempts integer, result_ttl float8, attempts integer,
    nacks integer, additional_deliveries integer, error_count integer, last_error text,
    lease_until float8, result bytea, result_encoding smallint, finished_at float8,
    seq bigint)
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
                      j.result_encoding, j.finished_at, j.seq),
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

-- The three-argument claim of migration 2 stays as it is, for processes of the previous
-- version during an upgrade (it records no holder).

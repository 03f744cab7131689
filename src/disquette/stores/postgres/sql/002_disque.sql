-- Migration 2 of the PostgreSQL store: what the Disque-protocol server needs.
--
-- Pause modes: paused_queues.mode has bit 1 (refuse adds, QueuePaused) and bit 2 (stop
-- delivery); rows from migration 1 were paused for delivery. A row with mode 0 is "none".
ALTER TABLE {schema}.paused_queues ADD COLUMN mode smallint NOT NULL DEFAULT 2;

-- The servers of a pool sharing this schema, each renewing its row before expires_at.
CREATE TABLE {schema}.nodes (
    id text COLLATE "C" PRIMARY KEY,
    address text NOT NULL,
    expires_at float8 NOT NULL
);

-- Called by every insert for each new job's queue: raises SQLSTATE DQ001 (the store turns it
-- into QueuePaused) when the queue is paused for input, so a refused add costs no round trip.
CREATE FUNCTION {schema}.accepts(p_queue text) RETURNS boolean
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM {schema}.paused_queues AS p
               WHERE p.queue = p_queue AND p.mode & 1 <> 0) THEN
        RAISE EXCEPTION USING ERRCODE = 'DQ001', MESSAGE = p_queue;
    END IF;
    RETURN true;
END
$$;

-- The claim of migration 1, now skipping only queues paused for delivery (mode bit 2): lease
-- up to p_count ready jobs, leftmost queue first, skipping such and rows other claimers hold. One round trip per claim.
CREATE OR REPLACE FUNCTION {schema}.claim(p_queues text[], p_count integer, p_now float8)
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
            SET state = 2, attempts = j.attempts + 1, leased_at = p_now,
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

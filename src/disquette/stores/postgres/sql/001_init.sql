-- Migration 1 of the PostgreSQL store: tables, indexes and the two server-side functions.
-- "{schema}" is replaced by the quoted schema name; the store runs this file once, under an
-- advisory lock, and records it in {schema}.schema_migrations.
--
-- States: 0 scheduled, 1 queued, 2 active, 4 failed (3, done, lives in the "done" table).
-- Every time is a float8 of epoch seconds passed in by the store's clock, never now().

-- Pending jobs only: the hot table. A job leaves it when it is acked (to "done", or nowhere
-- when result_ttl is 0), deleted or expired, so its live size is the backlog, not history.
-- Columns are in the order of disquette.job.Job's fields, then the store's own.
CREATE TABLE {schema}.jobs (
    id text COLLATE "C" PRIMARY KEY,
    queue text COLLATE "C" NOT NULL,
    body bytea NOT NULL,
    encoding smallint NOT NULL,
    type text,
    priority integer NOT NULL,
    state smallint NOT NULL,
    created_at float8 NOT NULL,
    run_at float8 NOT NULL,
    retry_after float8 NOT NULL,
    expires_at float8,                -- TTL
    max_attempts integer NOT NULL,
    result_ttl float8 NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    nacks integer NOT NULL DEFAULT 0,
    additional_deliveries integer NOT NULL DEFAULT 0,
    error_count integer NOT NULL DEFAULT 0,
    last_error text,
    lease_until float8,
    result bytea,
    result_encoding smallint NOT NULL DEFAULT 0,
    finished_at float8,               -- when a job was kept as failed
    leased_at float8,
    seq bigint GENERATED ALWAYS AS IDENTITY  -- enqueue order
) WITH (
    -- Every claim and ack leaves a dead row version behind. Vacuum after a fixed number of
    -- them, whatever the table's size, and without the cost-based sleeps, so the heap stays
    -- the size of the backlog. (The store also runs VACUUM itself, see vacuum_every.)
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_vacuum_cost_delay = 0,
    -- State changes touch indexed columns, so updates are never HOT; room on the page still
    -- keeps a job's next version next to the old one.
    fillfactor = 90
);

-- The claim walks this index from the first entry of its queue and stops after "count"
-- rows. With 1,000,000 queued jobs (EXPLAIN (ANALYZE) of the claim's inner select):
--   Limit (actual rows=100)
--     -> LockRows
--       -> Index Scan using jobs_ready on jobs (actual rows=100)
--            Index Cond: (queue = 'q')
-- The other partial indexes hold only the jobs each maintenance step looks for, so the
-- steps that find nothing (the usual case) read one index page each.
CREATE INDEX jobs_ready ON {schema}.jobs (queue, priority, run_at, seq) WHERE state = 1;
CREATE INDEX jobs_scheduled ON {schema}.jobs (run_at) WHERE state = 0;
CREATE INDEX jobs_leases ON {schema}.jobs (lease_until) WHERE state = 2;
CREATE INDEX jobs_expiry ON {schema}.jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX jobs_failed ON {schema}.jobs (queue, finished_at, seq) WHERE state = 4;

-- Acked jobs and their results, until result_ttl runs out (wait() reads them). Append-only
-- apart from pruning in batches, so it never slows the claim down.
CREATE TABLE {schema}.done (
    id text COLLATE "C" PRIMARY KEY,
    queue text COLLATE "C" NOT NULL,
    body bytea NOT NULL,
    encoding smallint NOT NULL,
    type text,
    priority integer NOT NULL,
    created_at float8 NOT NULL,
    run_at float8 NOT NULL,
    retry_after float8 NOT NULL,
    expires_at float8 NOT NULL,       -- finished_at + result_ttl
    max_attempts integer NOT NULL,
    result_ttl float8 NOT NULL,
    attempts integer NOT NULL,
    nacks integer NOT NULL,
    additional_deliveries integer NOT NULL,
    error_count integer NOT NULL,
    last_error text,
    result bytea,
    result_encoding smallint NOT NULL,
    finished_at float8 NOT NULL,
    seq bigint NOT NULL
) WITH (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);
CREATE INDEX done_expiry ON {schema}.done (expires_at);

CREATE TABLE {schema}.paused_queues (queue text COLLATE "C" PRIMARY KEY);

-- What time made due, in the same order as the memory store: expire, promote scheduled jobs,
-- requeue lapsed leases (returns how many), prune done jobs. Rows another transaction holds
-- (a claim in flight, an ack inside a caller's transaction) are skipped, never waited for:
-- the next call gets them, and a job being acked in a transaction is not redelivered.
--
-- Every step picks rows by ctid ("ctid = ANY(ARRAY(...))", a TID scan) rather than joining
-- on id: a queue table swings between empty and huge faster than its statistics follow, and a
-- join planned while the table looked empty (a nested loop over a sequential scan) costs
-- seconds once it is not. The locked rows cannot move until this transaction ends.
CREATE FUNCTION {schema}.maintain(p_now float8) RETURNS integer
LANGUAGE plpgsql
-- The plans below must walk their index in order whatever the statistics say: right after a
-- bulk add (before autovacuum's ANALYZE) the planner believes the table small, and would
-- sort the whole backlog to take its first hundred rows (0.6 s for 300,000 jobs).
SET enable_sort = off
SET enable_seqscan = off
AS $$
DECLARE
    requeued integer := 0;
    changed integer;
BEGIN
    -- Each step first reads the earliest due time from its partial index: usually nothing
    -- is due, and min() over an index is one page whatever the backlog. (An EXISTS with
    -- "<= p_now" would not do: planned generically, it may scan the whole table.) The
    -- steps themselves walk the index in order, in batches, for the same reason.
    IF (SELECT min(e.expires_at) FROM {schema}.jobs AS e WHERE e.expires_at IS NOT NULL)
        <= p_now THEN
        LOOP
            DELETE FROM {schema}.jobs
            WHERE ctid = ANY(ARRAY(
                SELECT e.ctid FROM {schema}.jobs AS e
                WHERE e.expires_at <= p_now ORDER BY e.expires_at LIMIT 10000
                FOR UPDATE SKIP LOCKED));
            GET DIAGNOSTICS changed = ROW_COUNT;
            EXIT WHEN changed < 10000;
        END LOOP;
    END IF;

    IF (SELECT min(s.run_at) FROM {schema}.jobs AS s WHERE s.state = 0) <= p_now THEN
        LOOP
            UPDATE {schema}.jobs SET state = 1
            WHERE ctid = ANY(ARRAY(
                SELECT s.ctid FROM {schema}.jobs AS s
                WHERE s.state = 0 AND s.run_at <= p_now ORDER BY s.run_at LIMIT 10000
                FOR UPDATE SKIP LOCKED));
            GET DIAGNOSTICS changed = ROW_COUNT;
            EXIT WHEN changed < 10000;
        END LOOP;
    END IF;

    IF (SELECT min(l.lease_until) FROM {schema}.jobs AS l WHERE l.state = 2) <= p_now THEN
        LOOP
            UPDATE {schema}.jobs
            SET state = 1, lease_until = NULL, leased_at = NULL,
                additional_deliveries = additional_deliveries + 1
            WHERE ctid = ANY(ARRAY(
                SELECT l.ctid FROM {schema}.jobs AS l
                WHERE l.state = 2 AND l.lease_until <= p_now ORDER BY l.lease_until
                LIMIT 10000
                FOR UPDATE SKIP LOCKED));
            GET DIAGNOSTICS changed = ROW_COUNT;
            requeued := requeued + changed;
            EXIT WHEN changed < 10000;
        END LOOP;
    END IF;

    -- One bounded batch per call, so a claim never pays for pruning a whole hour of
    -- results at once; readers treat done rows past expires_at as gone.
    IF (SELECT min(x.expires_at) FROM {schema}.done AS x) <= p_now THEN
        DELETE FROM {schema}.done
        WHERE ctid = ANY(ARRAY(
            SELECT x.ctid FROM {schema}.done AS x
            WHERE x.expires_at <= p_now ORDER BY x.expires_at LIMIT 5000
            FOR UPDATE SKIP LOCKED));
    END IF;
    RETURN requeued;
END
$$;

-- Maintenance, then lease up to p_count ready jobs, leftmost queue first, skipping paused
-- queues and rows other claimers hold. One round trip per claim.
CREATE FUNCTION {schema}.claim(p_queues text[], p_count integer, p_now float8)
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
        CONTINUE WHEN EXISTS (SELECT 1 FROM {schema}.paused_queues AS p WHERE p.queue = q);
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

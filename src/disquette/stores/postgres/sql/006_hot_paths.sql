-- Migration 6 of the PostgreSQL store: NOTIFY only for registered waiters, and maintenance
-- bounded per call and run by one process at a time (issue 12).
--
-- Waiters. A transaction that issued a NOTIFY takes a cluster-wide lock at its commit,
-- listened to or not: with 8 processes acking one by one, a NOTIFY per ack cost up to half
-- the throughput. So a process's LISTEN connection registers here what it waits for (a
-- queue some blocked get waits on, kind 1; results of waits, kind 2, name ''), and the
-- statements NOTIFY only when such a row exists. The table is UNLOGGED: it is cheap to
-- write, empty after a crash or on a promoted standby, and every listener registers again
-- each time it connects. A row is keyed by its listener's backend (pid and start time): a
-- row whose backend is gone is deleted (forget_dead_waiters in queries.sql, with each
-- prune of done rows and by each listener as it connects);
-- until then it costs a NOTIFY nobody reads, never a lost wake-up.
CREATE UNLOGGED TABLE {schema}.waiters (
    kind smallint NOT NULL,            -- 1: jobs became ready in queue "name"; 2: done
    name text COLLATE "C" NOT NULL,
    pid integer NOT NULL,
    started timestamptz NOT NULL,
    PRIMARY KEY (kind, name, pid, started)
);

-- The NOTIFY of "jobs became ready in p_queue", sent only if some process waits on it.
-- (plpgsql, not sql: PostgreSQL before 18 plans a sql function's body again in each
-- statement that calls it; plpgsql keeps the plan for the session.)
CREATE FUNCTION {schema}.wake(p_channel text, p_queue text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM {schema}.waiters AS w WHERE w.kind = 1 AND w.name = p_queue) THEN
        PERFORM pg_notify(p_channel, p_queue);
    END IF;
END
$$;

-- The NOTIFY of "jobs are done or gone", sent only if some process waits for a result.
CREATE FUNCTION {schema}.wake_done(p_channel text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM {schema}.waiters AS w WHERE w.kind = 2) THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
END
$$;

-- What time made due, as maintain() of 004_lapsed.sql, but bounded and by one process at a
-- time: each step applies at most p_batch rows per call, and only the caller that gets the
-- schema's maintenance lock (pg_try_advisory_xact_lock, never waited for) does anything; the
-- others go on at once, since the holder is applying the same changes. The probes come
-- first and take no lock, so a call when nothing is due (the usual case) reads one index
-- page per step. Queues where jobs became ready are woken on p_channel (for their
-- registered waiters). Done rows are no longer pruned here but by prune_done, on a count of
-- acks. Returns how many leased jobs it requeued.
CREATE FUNCTION {schema}.maintain_due(p_now float8, p_batch integer, p_channel text)
RETURNS integer
LANGUAGE plpgsql
SET enable_sort = off  -- see 001_init.sql
SET enable_seqscan = off
AS $$
DECLARE
    expire boolean;
    promote boolean;
    lapse boolean;
    requeued integer := 0;
    promoted text[];
    lapsed text[];
BEGIN
    expire := (SELECT min(e.expires_at) FROM {schema}.jobs AS e WHERE e.expires_at IS NOT NULL)
        <= p_now;
    promote := (SELECT min(s.run_at) FROM {schema}.jobs AS s WHERE s.state = 0) <= p_now;
    lapse := (SELECT min(l.lease_until) FROM {schema}.jobs AS l WHERE l.state = 2) <= p_now;
    IF NOT (coalesce(expire, false) OR coalesce(promote, false) OR coalesce(lapse, false))
        OR NOT pg_try_advisory_xact_lock(hashtextextended('disquette maintain {schema}', 0))
    THEN
        RETURN 0;
    END IF;
    IF expire THEN
        DELETE FROM {schema}.jobs
        WHERE ctid = ANY(ARRAY(
            SELECT e.ctid FROM {schema}.jobs AS e
            WHERE e.expires_at <= p_now ORDER BY e.expires_at LIMIT p_batch
            FOR UPDATE SKIP LOCKED));
    END IF;
    IF promote THEN
        WITH ready AS (
            UPDATE {schema}.jobs SET state = 1
            WHERE ctid = ANY(ARRAY(
                SELECT s.ctid FROM {schema}.jobs AS s
                WHERE s.state = 0 AND s.run_at <= p_now ORDER BY s.run_at LIMIT p_batch
                FOR UPDATE SKIP LOCKED))
            RETURNING queue)
        SELECT array_agg(DISTINCT ready.queue) INTO promoted FROM ready;
    END IF;
    IF lapse THEN
        -- leased_at stays: the delivery still holds the job until a claim takes it.
        WITH ready AS (
            UPDATE {schema}.jobs
            SET state = 1, lease_until = NULL,
                additional_deliveries = additional_deliveries + 1
            WHERE ctid = ANY(ARRAY(
                SELECT l.ctid FROM {schema}.jobs AS l
                WHERE l.state = 2 AND l.lease_until <= p_now ORDER BY l.lease_until
                LIMIT p_batch
                FOR UPDATE SKIP LOCKED))
            RETURNING queue)
        SELECT count(*), array_agg(DISTINCT ready.queue) INTO requeued, lapsed FROM ready;
    END IF;
    PERFORM {schema}.wake(p_channel, q)
    FROM (SELECT DISTINCT u.q FROM unnest(promoted || lapsed) AS u (q)) AS woken;
    RETURN requeued;
END
$$;

-- One bounded batch of done rows past their result_ttl, by one process at a time (a lock
-- of its own, so that it never delays the maintenance of claims). Returns how many done
-- rows it deleted.
CREATE FUNCTION {schema}.prune_done(p_now float8, p_batch integer) RETURNS integer
LANGUAGE plpgsql
SET enable_sort = off
SET enable_seqscan = off
AS $$
DECLARE
    pruned integer := 0;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('disquette prune {schema}', 0)) THEN
        RETURN 0;
    END IF;
    IF (SELECT min(x.expires_at) FROM {schema}.done AS x) <= p_now THEN
        DELETE FROM {schema}.done
        WHERE ctid = ANY(ARRAY(
            SELECT x.ctid FROM {schema}.done AS x
            WHERE x.expires_at <= p_now ORDER BY x.expires_at LIMIT p_batch
            FOR UPDATE SKIP LOCKED));
        GET DIAGNOSTICS pruned = ROW_COUNT;
    END IF;
    RETURN pruned;
END
$$;

-- The claim of migration 5 (claim_jobs, same result), with the bounded maintenance above
-- instead of a whole maintain() on every claim (p_channel: the channel it wakes queues on). claim_jobs stays as it was, for processes of
-- the previous version during an upgrade.
CREATE FUNCTION {schema}.claim_ready(p_queues text[], p_count integer, p_now float8,
                                     p_holder text, p_channel text)
RETURNS TABLE (
    id text, queue text, body bytea, encoding smallint, type text, priority integer,
    state smallint, created_at float8, run_at float8, retry_after float8,
    expires_at float8, max_attempts integer, result_ttl float8, attempts integer,
    nacks integer, additional_deliveries integer, error_count integer, last_error text,
    lease_until float8, result bytea, result_encoding smallint, finished_at float8,
    seq bigint, cancel_requested boolean, progress text, headers json)
LANGUAGE plpgsql
SET enable_sort = off  -- see 001_init.sql
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    wanted integer := p_count;
    taken integer;
    q text;
BEGIN
    PERFORM {schema}.maintain_due(p_now, 1000, p_channel);
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
                      j.result_encoding, j.finished_at, j.seq, j.cancel_requested,
                      j.progress, j.headers),
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

-- Migration 4 of the PostgreSQL store: a lapsed lease nobody took is still its delivery's.
--
-- The maintenance still requeues a job whose lease ran out (ready for a newer claim, an
-- additional delivery), but keeps its leased_at: a queued job with a leased_at is one
-- whose delivery still holds it until a claim takes it. If that delivery acks, nacks,
-- fails or extends the job first, the requeue is taken back (see "ack" in queries.sql).
-- Every other way into the ready state clears leased_at; the claim sets it anew.
--
-- The maintenance of migration 1 but for the kept leased_at (001_init.sql says why each
-- step is written as it is).
CREATE OR REPLACE FUNCTION {schema}.maintain(p_now float8) RETURNS integer
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
            -- leased_at stays: the delivery still holds the job until a claim takes it.
            UPDATE {schema}.jobs
            SET state = 1, lease_until = NULL,
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

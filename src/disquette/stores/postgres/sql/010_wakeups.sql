-- Migration 10 of the PostgreSQL store: a wait is signalled for its own job only, and the
-- maintenance probes only in the call that holds its lock (issue 12).
--
-- Waits on one job. Until now a process that waited for any result registered a waiter of
-- kind 2, and from then on every ack, failure, cancel and delete of every process sent a
-- NOTIFY (a cluster-wide lock at its commit) that woke every wait of every waiting
-- process, each to read its job again. Now a wait registers its job: kind 3, name the
-- job's id, on behalf of its process's LISTEN backend (pid and start time, as the other
-- kinds, so forget_dead_waiters drops the rows of a process that died). The statements
-- that end jobs call wake_jobs with the ids they ended: it NOTIFYs, with the id as its
-- payload, only the jobs that some process waits on, and the listener wakes only the
-- waits on that job. The store registers a wait's job in the round trip of the wait's
-- first read, before that read (register_job_waiters in queries.sql), locking the job row
-- FOR SHARE: an end racing the registration either is seen by the read, or waits for the
-- registration's commit and then finds its row (wake_jobs is plpgsql and VOLATILE: each
-- of its statements takes a new snapshot, after the row lock was granted). The listener
-- deletes its rows of jobs nothing waits on any more.
--
-- Processes of the previous version register kind 2 and read any NOTIFY on the done
-- channel as "some job ended": for them wake_jobs still sends one with an empty payload,
-- and wake_done (a flush, and the children that resolve_children ends, both rare) now
-- sends it when a waiter of either kind exists; this version's listener reads an empty
-- payload as "any job may have ended", as before.

-- What a statement that ended the jobs p_ids sends: each id some process waits on, once
-- (not an ended job nobody waits for: the usual case costs one index probe per id).
CREATE FUNCTION {schema}.wake_jobs(p_channel text, p_ids text[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(p_channel, waited.name)
    FROM (SELECT DISTINCT w.name FROM {schema}.waiters AS w
          WHERE w.kind = 3 AND w.name = ANY(p_ids)) AS waited;
    IF EXISTS (SELECT FROM {schema}.waiters AS w WHERE w.kind = 2) THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
END
$$;

-- "Jobs are done or gone" without their ids (a flush, children ended by their parents):
-- sent if some process waits for any result, or on any job.
CREATE OR REPLACE FUNCTION {schema}.wake_done(p_channel text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM {schema}.waiters AS w WHERE w.kind IN (2, 3)) THEN
        PERFORM pg_notify(p_channel, '');
    END IF;
END
$$;

-- maintain_due of migration 9 (same signature, same work), its lock taken before its
-- probes. While a burst of scheduled jobs comes due, the entries of the jobs already
-- promoted stay at the head of jobs_scheduled until a VACUUM: with a million due, each
-- probe of min(run_at) walked hundreds of pages of them (about 1.5 ms), and every claim of
-- every process probed. Now only the call that gets the lock probes (and promotes); the
-- others, which would skip anyway, are done after one try of an advisory lock. When
-- nothing is due, one call at a time probes, and the others skip without reading.
CREATE OR REPLACE FUNCTION {schema}.maintain_due(p_now float8, p_batch integer, p_channel text,
                                                 p_done_channel text)
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
    orphaned text[];
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtextextended('disquette maintain {schema}', 0)) THEN
        RETURN 0;
    END IF;
    expire := (SELECT min(e.expires_at) FROM {schema}.jobs AS e WHERE e.expires_at IS NOT NULL)
        <= p_now;
    promote := (SELECT min(s.run_at) FROM {schema}.jobs AS s WHERE s.state = 0) <= p_now;
    lapse := (SELECT min(l.lease_until) FROM {schema}.jobs AS l WHERE l.state = 2) <= p_now;
    IF expire THEN
        WITH gone AS (
            DELETE FROM {schema}.jobs
            WHERE ctid = ANY(ARRAY(
                SELECT e.ctid FROM {schema}.jobs AS e
                WHERE e.expires_at <= p_now ORDER BY e.expires_at LIMIT p_batch
                FOR UPDATE SKIP LOCKED))
            RETURNING id, state, has_children)
        SELECT array_agg(gone.id) FILTER (WHERE gone.has_children AND gone.state IN (0, 1, 2, 6))
        INTO orphaned FROM gone;
        IF orphaned IS NOT NULL THEN
            PERFORM {schema}.resolve_children(orphaned, 'expired', p_now, p_channel,
                                              p_done_channel);
        END IF;
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


-- Migration 11 of the PostgreSQL store: the maintenance leaves the claims (issue 12).
--
-- Until now each claim (and each read) ran maintain_due, and the one call that got its
-- lock applied a batch of up to 1,000 rows per step: while a burst of scheduled jobs came
-- due, that claim paid the batch (~35 ms for a promote of 1,000 rows, write-bound). Now
-- one process at a time, the maintainer (a session holding an advisory lock, see
-- maintainer_async.py), applies the batches, and publishes in the one-row maintainer table
-- the span of clock readings it answers for: from a lease before its last pass to a lease
-- after it. A claim whose reading falls in that span skips the maintenance; outside it (no
-- maintainer, one that stopped renewing, a caller whose clock is far off), the claim
-- applies a batch itself, as before. The span is renewed on every pass, at least every
-- quarter of a second, so a maintainer that dies stops covering the claims within a lease.

CREATE TABLE {schema}.maintainer (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    covered_from float8 NOT NULL,
    covered_until float8 NOT NULL
);

-- The batch of migration 10, under a new name: the maintainer and maintain_due call it.
ALTER FUNCTION {schema}.maintain_due(float8, integer, text, text) RENAME TO maintain_batch;

-- maintain_due, same signature and result (claims of this and the previous versions, and
-- the reads, call it): nothing when a live maintainer covers p_now, else one batch per step.
CREATE FUNCTION {schema}.maintain_due(p_now float8, p_batch integer, p_channel text,
                                      p_done_channel text)
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    -- By its primary key: the claims run with enable_seqscan off, and the disabled scan's
    -- cost would make the planner compile the query (JIT, ~40 ms) on every call.
    IF EXISTS (SELECT 1 FROM {schema}.maintainer AS m
               WHERE m.only_row AND p_now BETWEEN m.covered_from AND m.covered_until) THEN
        RETURN 0;
    END IF;
    RETURN {schema}.maintain_batch(p_now, p_batch, p_channel, p_done_channel);
END
$$;

-- What is due next, and when: the earliest expiry, scheduled run and lease end (NULL:
-- nothing scheduled, leased or expiring).
CREATE FUNCTION {schema}.next_due() RETURNS float8
LANGUAGE sql STABLE
SET enable_sort = off  -- see 001_init.sql
SET enable_seqscan = off
AS $$
    SELECT least(
        (SELECT min(e.expires_at) FROM {schema}.jobs AS e WHERE e.expires_at IS NOT NULL),
        (SELECT min(s.run_at) FROM {schema}.jobs AS s WHERE s.state = 0),
        (SELECT min(l.lease_until) FROM {schema}.jobs AS l WHERE l.state = 2));
$$;

-- One pass of the maintainer (a procedure: it commits each batch). Batch after batch, each
-- committed at once (its jobs ready for the claims) and renewing the span the maintainer
-- answers for ([p_now - p_lease, p_now + p_lease]), until a batch changes fewer than
-- p_batch rows or p_budget seconds have passed: one round trip for many batches, so a
-- maintainer on a loaded machine does not wait for the CPU between two batches. Returns
-- locked (a claim outside the span holds the maintenance lock: nothing applied), how many
-- rows of jobs it changed (none while what is due is row-locked by another transaction:
-- the maintainer then waits rather than spin), and next_due. CALL it outside a
-- transaction block (autocommit).
CREATE PROCEDURE {schema}.maintainer_pass(p_now float8, p_batch integer, p_lease float8,
                                          p_budget float8, p_channel text,
                                          p_done_channel text, INOUT locked boolean,
                                          INOUT changed bigint, INOUT next_due float8)
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
    step bigint;
BEGIN
    changed := 0;
    LOOP
        locked := NOT pg_try_advisory_xact_lock(
            hashtextextended('disquette maintain {schema}', 0));
        EXIT WHEN locked;
        -- This transaction's own counts (pending ones of earlier transactions included).
        step := -(pg_stat_get_xact_tuples_updated('{schema}.jobs'::regclass)
                  + pg_stat_get_xact_tuples_deleted('{schema}.jobs'::regclass));
        PERFORM {schema}.maintain_batch(p_now, p_batch, p_channel, p_done_channel);
        step := step + pg_stat_get_xact_tuples_updated('{schema}.jobs'::regclass)
            + pg_stat_get_xact_tuples_deleted('{schema}.jobs'::regclass);
        changed := changed + step;
        INSERT INTO {schema}.maintainer AS m (only_row, covered_from, covered_until)
        VALUES (true, p_now - p_lease, p_now + p_lease)
        ON CONFLICT (only_row) DO UPDATE
        SET covered_from = excluded.covered_from, covered_until = excluded.covered_until;
        COMMIT;
        EXIT WHEN step < p_batch
            OR clock_timestamp() - started > p_budget * interval '1 second';
    END LOOP;
    IF locked THEN  -- the span is renewed all the same (the lock's holder is applying)
        INSERT INTO {schema}.maintainer AS m (only_row, covered_from, covered_until)
        VALUES (true, p_now - p_lease, p_now + p_lease)
        ON CONFLICT (only_row) DO UPDATE
        SET covered_from = excluded.covered_from, covered_until = excluded.covered_until;
    END IF;
    next_due := {schema}.next_due();
END
$$;

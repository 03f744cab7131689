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
    IF EXISTS (SELECT 1 FROM {schema}.maintainer AS m
               WHERE p_now BETWEEN m.covered_from AND m.covered_until) THEN
        RETURN 0;
    END IF;
    RETURN {schema}.maintain_batch(p_now, p_batch, p_channel, p_done_channel);
END
$$;

-- One pass of the maintainer: a batch per step (unless a claim that fell back holds the
-- maintenance lock: then locked is true and nothing is applied), how many rows of jobs it
-- changed (none while what is due is row-locked by another transaction: the maintainer
-- then waits rather than spin), the earliest time something is due next (NULL: nothing
-- scheduled, leased or expiring), and the span it answers for renewed:
-- [p_now - p_lease, p_now + p_lease].
CREATE FUNCTION {schema}.maintainer_pass(p_now float8, p_batch integer, p_lease float8,
                                         p_channel text, p_done_channel text,
                                         OUT locked boolean, OUT changed bigint,
                                         OUT next_due float8)
LANGUAGE plpgsql
SET enable_sort = off  -- see 001_init.sql
SET enable_seqscan = off
AS $$
BEGIN
    locked := NOT pg_try_advisory_xact_lock(hashtextextended('disquette maintain {schema}', 0));
    IF NOT locked THEN
        PERFORM {schema}.maintain_batch(p_now, p_batch, p_channel, p_done_channel);
    END IF;
    -- This transaction's own counts (each pass is one transaction).
    changed := pg_stat_get_xact_tuples_updated('{schema}.jobs'::regclass)
        + pg_stat_get_xact_tuples_deleted('{schema}.jobs'::regclass);
    next_due := least(
        (SELECT min(e.expires_at) FROM {schema}.jobs AS e WHERE e.expires_at IS NOT NULL),
        (SELECT min(s.run_at) FROM {schema}.jobs AS s WHERE s.state = 0),
        (SELECT min(l.lease_until) FROM {schema}.jobs AS l WHERE l.state = 2));
    INSERT INTO {schema}.maintainer AS m (only_row, covered_from, covered_until)
    VALUES (true, p_now - p_lease, p_now + p_lease)
    ON CONFLICT (only_row) DO UPDATE
    SET covered_from = excluded.covered_from, covered_until = excluded.covered_until;
END
$$;

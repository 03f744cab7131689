-- Migration 9 of the PostgreSQL store: job dependencies (issue 16).
--
-- A job added with depends_on whose parents are not all done waits in state 6 ("waiting")
-- with pending_parents, the number of its parents still pending when it was added (or
-- since: each parent's end takes one off). It is never claimed, promoted, enqueued or
-- counted by qlen: those statements name the states they take. depends_on is the parents'
-- ids (NULL for none: a job without parents costs nothing more), on_dependency_failure the
-- policy code (0 fail, 1 run; disquette.stores._sql.POLICIES).
--
-- has_children marks a pending job that some waiting job was added under: the statements
-- that end a job (ack, fail for good, cancel, delete, expiry) read it from the row they
-- change anyway, and call resolve_children only when it is set and the job was pending, so
-- a job without children pays nothing. The add sets it with an UPDATE of the parents
-- (lock_parents in queries.sql), which locks them until the add commits: an ack, a failure
-- or a cancel of a parent racing the add waits for it, and then finds the flag (READ
-- COMMITTED rechecks the row it waited for), or the add waits for the ack and finds the
-- parent done. It is cleared by retry: a failed job resolved its children when it failed.
--
-- Adding nullable columns and a column with a constant default rewrites neither table.
-- The claim functions of migrations 6 and 8 return named columns, so processes of the
-- previous version keep claiming through them during an upgrade; this version claims
-- through lease_ready and lease_limited, which also return depends_on and
-- on_dependency_failure (a function's result type cannot change in place). Their
-- maintenance is this version's (maintain_due and maintain are replaced below, same
-- signatures), so a parent expired by any process resolves its children; but a parent
-- acked, failed, cancelled or deleted by a process of the previous version does not:
-- finish the upgrade before adding jobs with depends_on.
ALTER TABLE {schema}.jobs
    ADD COLUMN depends_on text[],
    ADD COLUMN on_dependency_failure smallint,
    ADD COLUMN pending_parents integer,
    ADD COLUMN has_children boolean NOT NULL DEFAULT false;
ALTER TABLE {schema}.done
    ADD COLUMN depends_on text[],
    ADD COLUMN on_dependency_failure smallint;

-- A parent's waiting children: only waiting jobs are in it, so no other job's insert,
-- claim or ack writes to it.
CREATE INDEX jobs_waiting ON {schema}.jobs USING gin (depends_on) WHERE state = 6;

-- The parents p_parents ended (p_end: done, failed, cancelled, deleted, expired): apply it
-- to their waiting children, in the caller's transaction. A child counts a done parent,
-- or under policy run any parent, as finished: once none is pending it is released
-- (queued, its run_at raised to p_now; scheduled if its run_at is later). Under policy
-- fail, a parent ended otherwise ends the child: failed (kept, no expiry) after a failed
-- parent, else cancelled (kept for its result_ttl), with the last_error of
-- disquette.stores.types.dependency_error; a child so ended that has children of its own
-- resolves them in turn. Wakes the queues it made jobs ready in (p_channel) and result
-- waiters (p_done_channel) when it ended a child; NULL channels: no NOTIFY. Returns the
-- queues it made jobs ready in.
--
-- VOLATILE (the default): each statement here takes a fresh snapshot, so it sees a child
-- whose add committed while the caller's statement waited for the parent's row lock.
-- The children are locked in id order: two parents of one child ending at once take
-- turns, the second seeing the first's count.
CREATE FUNCTION {schema}.resolve_children(p_parents text[], p_end text, p_now float8,
                                          p_channel text, p_done_channel text)
RETURNS text[]
LANGUAGE plpgsql
SET enable_seqscan = off
AS $$
DECLARE
    parents text[] := p_parents;
    ends text[] := array_fill(p_end, ARRAY[cardinality(p_parents)]);
    ready text[] := '{}';
    ended boolean := false;
    ended_now boolean;
    next_parents text[];
    next_ends text[];
    made_ready text[];
BEGIN
    WHILE cardinality(parents) > 0 LOOP
        WITH locked AS (
            SELECT c.id, c.depends_on, c.on_dependency_failure, c.pending_parents
            FROM {schema}.jobs AS c
            WHERE c.state = 6 AND c.depends_on && parents
            ORDER BY c.id
            FOR UPDATE),
        hit AS (
            SELECT l.id, l.on_dependency_failure AS policy, l.pending_parents, m.finished,
                   m.blocker, m.blocker_end
            FROM locked AS l
            CROSS JOIN LATERAL (
                SELECT count(*)::integer AS finished,
                       (array_agg(e.parent ORDER BY d.ord) FILTER (WHERE e.how <> 'done'))[1]
                           AS blocker,
                       (array_agg(e.how ORDER BY d.ord) FILTER (WHERE e.how <> 'done'))[1]
                           AS blocker_end
                FROM unnest(l.depends_on) WITH ORDINALITY AS d (parent, ord)
                JOIN unnest(parents, ends) AS e (parent, how) ON e.parent = d.parent) AS m),
        outcome AS (
            SELECT h.id, h.blocker, h.blocker_end,
                   CASE WHEN coalesce(h.policy, 0) = 0 AND h.blocker IS NOT NULL THEN 'end'
                        WHEN h.pending_parents > h.finished THEN 'wait'
                        ELSE 'release' END AS what,
                   h.pending_parents - h.finished AS pending
            FROM hit AS h),
        changed AS (
            UPDATE {schema}.jobs AS c
            SET state = CASE o.what WHEN 'wait' THEN 6
                                    WHEN 'end' THEN (CASE WHEN o.blocker_end = 'failed'
                                                          THEN 4 ELSE 5 END)
                                    ELSE (CASE WHEN c.run_at <= p_now THEN 1 ELSE 0 END) END,
                pending_parents = greatest(o.pending, 0),
                run_at = CASE WHEN o.what = 'release' THEN greatest(c.run_at, p_now)
                              ELSE c.run_at END,
                last_error = CASE WHEN o.what = 'end'
                                  THEN 'dependency ' || o.blocker || ' ' || o.blocker_end
                                  ELSE c.last_error END,
                finished_at = CASE WHEN o.what = 'end' THEN p_now ELSE c.finished_at END,
                expires_at = CASE WHEN o.what <> 'end' THEN c.expires_at
                                  WHEN o.blocker_end = 'failed' THEN NULL
                                  ELSE p_now + c.result_ttl END
            FROM outcome AS o
            WHERE c.id = o.id
            RETURNING c.id, c.queue, c.state, c.has_children)
        SELECT array_agg(ch.id) FILTER (WHERE ch.state IN (4, 5) AND ch.has_children),
               array_agg(CASE ch.state WHEN 4 THEN 'failed' ELSE 'cancelled' END)
                   FILTER (WHERE ch.state IN (4, 5) AND ch.has_children),
               array_agg(ch.queue) FILTER (WHERE ch.state = 1),
               coalesce(bool_or(ch.state IN (4, 5)), false)
        INTO next_parents, next_ends, made_ready, ended_now
        FROM changed AS ch;
        ready := ready || coalesce(made_ready, '{}');
        ended := ended OR ended_now;
        parents := coalesce(next_parents, '{}');
        ends := coalesce(next_ends, '{}');
    END LOOP;
    IF ended AND p_done_channel IS NOT NULL THEN
        PERFORM {schema}.wake_done(p_done_channel);
    END IF;
    ready := ARRAY(SELECT DISTINCT u.q FROM unnest(ready) AS u (q));
    IF p_channel IS NOT NULL THEN
        PERFORM {schema}.wake(p_channel, u.q) FROM unnest(ready) AS u (q);
    END IF;
    RETURN ready;
END
$$;

-- maintain_due of migration 6, whose expiry resolves the children of the pending jobs it
-- drops (p_done_channel: the channel of result waiters, for the children it ends).
CREATE FUNCTION {schema}.maintain_due(p_now float8, p_batch integer, p_channel text,
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

-- Migration 6's maintain_due, for processes of the previous version (their claim_ready
-- calls it): the same work, through the function above. The result waiters' channel is
-- the ready channel's name with ".done" (statements.channel_name, but for a schema name
-- so long that only one of the two is hashed: those waiters then miss a NOTIFY, and
-- poll).
CREATE OR REPLACE FUNCTION {schema}.maintain_due(p_now float8, p_batch integer,
                                                 p_channel text)
RETURNS integer
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN {schema}.maintain_due(p_now, p_batch, p_channel, p_channel || '.done');
END
$$;

-- Everything time made due, however much (recover_stale): maintain() of 004_lapsed.sql,
-- whose expiry resolves the children of the pending jobs it drops.
CREATE FUNCTION {schema}.maintain(p_now float8, p_channel text, p_done_channel text)
RETURNS integer
LANGUAGE plpgsql
SET enable_sort = off
SET enable_seqscan = off
AS $$
DECLARE
    requeued integer := 0;
    changed integer;
    orphaned text[];
BEGIN
    IF (SELECT min(e.expires_at) FROM {schema}.jobs AS e WHERE e.expires_at IS NOT NULL)
        <= p_now THEN
        LOOP
            WITH gone AS (
                DELETE FROM {schema}.jobs
                WHERE ctid = ANY(ARRAY(
                    SELECT e.ctid FROM {schema}.jobs AS e
                    WHERE e.expires_at <= p_now ORDER BY e.expires_at LIMIT 10000
                    FOR UPDATE SKIP LOCKED))
                RETURNING id, state, has_children)
            SELECT count(*), array_agg(gone.id) FILTER (
                       WHERE gone.has_children AND gone.state IN (0, 1, 2, 6))
            INTO changed, orphaned FROM gone;
            IF orphaned IS NOT NULL THEN
                PERFORM {schema}.resolve_children(orphaned, 'expired', p_now, p_channel,
                                                  p_done_channel);
            END IF;
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

-- Migration 4's maintain, for processes of the previous version (recover_stale): the
-- same work through the function above, without NOTIFYs (it has no channels).
CREATE OR REPLACE FUNCTION {schema}.maintain(p_now float8) RETURNS integer
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN {schema}.maintain(p_now, NULL, NULL);
END
$$;

-- The claim of migration 6 (claim_ready), returning the job's parents and policy too, and
-- with the maintenance above. claim_ready stays as it was, for processes of the previous
-- version during an upgrade.
CREATE FUNCTION {schema}.lease_ready(p_queues text[], p_count integer, p_now float8,
                                     p_holder text, p_channel text, p_done_channel text)
RETURNS TABLE (
    id text, queue text, body bytea, encoding smallint, type text, priority integer,
    state smallint, created_at float8, run_at float8, retry_after float8,
    expires_at float8, max_attempts integer, result_ttl float8, attempts integer,
    nacks integer, additional_deliveries integer, error_count integer, last_error text,
    lease_until float8, result bytea, result_encoding smallint, finished_at float8,
    seq bigint, cancel_requested boolean, progress text, headers json, depends_on text[],
    on_dependency_failure smallint)
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
    PERFORM {schema}.maintain_due(p_now, 1000, p_channel, p_done_channel);
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
                      j.progress, j.headers, j.depends_on, j.on_dependency_failure),
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

-- The claim of migration 8 (claim_limited), through lease_ready. claim_limited stays as it
-- was, for processes of the previous version during an upgrade.
CREATE FUNCTION {schema}.lease_limited(p_queues text[], p_count integer, p_now float8,
                                       p_holder text, p_channel text, p_done_channel text)
RETURNS TABLE (
    id text, queue text, body bytea, encoding smallint, type text, priority integer,
    state smallint, created_at float8, run_at float8, retry_after float8,
    expires_at float8, max_attempts integer, result_ttl float8, attempts integer,
    nacks integer, additional_deliveries integer, error_count integer, last_error text,
    lease_until float8, result bytea, result_encoding smallint, finished_at float8,
    seq bigint, cancel_requested boolean, progress text, headers json, depends_on text[],
    on_dependency_failure smallint)
LANGUAGE plpgsql
AS $$
#variable_conflict use_column
DECLARE
    wanted integer := p_count;
    allowed integer;
    taken integer;
    q text;
    lim {schema}.queue_limits;
    level float8;
BEGIN
    IF NOT EXISTS (SELECT FROM {schema}.queue_limits AS l WHERE l.queue = ANY(p_queues)) THEN
        RETURN QUERY SELECT * FROM {schema}.lease_ready(p_queues, p_count, p_now, p_holder,
                                                        p_channel, p_done_channel);
        RETURN;
    END IF;
    FOREACH q IN ARRAY p_queues LOOP
        SELECT * INTO lim FROM {schema}.queue_limits AS l WHERE l.queue = q FOR UPDATE;
        allowed := wanted;
        IF FOUND THEN
            IF lim.concurrency IS NOT NULL THEN
                allowed := least(allowed, lim.concurrency - (
                    SELECT count(*) FROM {schema}.jobs AS j
                    WHERE j.state = 2 AND j.queue = q
                      AND (j.lease_until IS NULL OR j.lease_until > p_now))::integer);
            END IF;
            IF lim.rate_count IS NOT NULL THEN
                level := least(lim.rate_count::float8, lim.tokens
                               + greatest(0, p_now - lim.filled_at) * lim.rate_count / lim.rate_per);
                allowed := least(allowed, floor(level + 1e-9)::integer);
            END IF;
            allowed := greatest(allowed, 0);
        END IF;
        taken := 0;
        IF allowed > 0 THEN
            RETURN QUERY SELECT * FROM {schema}.lease_ready(ARRAY[q], allowed, p_now, p_holder,
                                                            p_channel, p_done_channel);
            GET DIAGNOSTICS taken = ROW_COUNT;
        END IF;
        IF lim.rate_count IS NOT NULL THEN  -- no row: every field is NULL
            UPDATE {schema}.queue_limits AS l SET tokens = level - taken, filled_at = p_now
            WHERE l.queue = q;
        END IF;
        wanted := wanted - taken;
        EXIT WHEN wanted <= 0;
    END LOOP;
END
$$;

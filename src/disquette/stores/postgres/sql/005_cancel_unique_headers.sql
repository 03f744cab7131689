-- Migration 5 of the PostgreSQL store: cancellation and progress, unique jobs, headers
-- (issue 13), in one migration.
--
-- Cancellation and progress.
-- State 5 is "cancelled": a job cancelled while scheduled or queued, or ended so by its
-- holder after a cancel request. It stays in jobs (not in done: it has no result) until its
-- expires_at (finished_at + result_ttl), which the maintenance's expiry step prunes.
-- cancel_requested marks an active job someone asked to cancel: working and progress then
-- refuse it, and a NOTIFY on the schema's ".cancel" channel tells the workers to look.
-- progress is the JSON text the holder last reported.
--
-- The columns change the row type of jobs, which only migration 2's three-argument claim
-- returns (SETOF jobs, see 003_holders.sql): processes two versions old must restart. The
-- claim of migration 3 returns named columns and keeps working for the previous version
-- during an upgrade; this version claims through claim_jobs, which also returns the new
-- columns (a function's result type cannot change in place).
ALTER TABLE {schema}.jobs
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN progress text;

-- Headers. A json column (not jsonb: json keeps the text as given, so the keys come back in
-- the order they were added, as on every other store), NULL when the job has none: a job
-- without headers costs nothing more. Adding a nullable column with no default rewrites
-- neither table.
ALTER TABLE {schema}.jobs ADD COLUMN headers json;
ALTER TABLE {schema}.done ADD COLUMN headers json;

-- The claim of migration 3, returning the cancel request, progress and headers too.
CREATE FUNCTION {schema}.claim_jobs(p_queues text[], p_count integer, p_now float8,
                                    p_holder text)
RETURNS TABLE (
    id text, queue text, body bytea, encoding smallint, type text, priority integer,
    state smallint, created_at float8, run_at float8, retry_after float8,
    expires_at float8, max_attempts integer, result_ttl float8, attempts integer,
    nacks integer, additional_deliveries integer, error_count integer, last_error text,
    lease_until float8, result bytea, result_encoding smallint, finished_at float8,
    seq bigint, cancel_requested boolean, progress text, headers json)
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

-- Unique jobs.
-- A job holds unique_key in its queue while the bit of its state (1 << state, the state
-- codes) is set in unique_states. On "jobs" (pending and failed jobs) a partial unique
-- index makes two holders impossible whoever writes; the key is free as soon as its
-- holder moves to a state that does not count, so no statement of a transition has to
-- know about keys. Done jobs live in "done": an ack keeps the key there only when done
-- counts (bit 8), and an add looks for such a holder itself (see insert_unique).
-- Both columns are NULL or 0 for every job added before: adding them rewrites nothing.
ALTER TABLE {schema}.jobs
    ADD COLUMN unique_key text COLLATE "C",
    ADD COLUMN unique_states smallint NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX jobs_unique ON {schema}.jobs (queue, unique_key)
    WHERE unique_key IS NOT NULL AND ((unique_states::int4 >> state::int4) & 1) = 1;
ALTER TABLE {schema}.done ADD COLUMN unique_key text COLLATE "C";
CREATE INDEX done_unique ON {schema}.done (queue, unique_key) WHERE unique_key IS NOT NULL;

-- Schedules: periodic jobs' definitions (JSON text, see ScheduleInfo.definition), written
-- by every scheduler at its start; paused is the operator's and outlives re-registering.
CREATE TABLE {schema}.schedules (
    name text COLLATE "C" PRIMARY KEY,
    definition text NOT NULL,
    paused boolean NOT NULL DEFAULT false
);

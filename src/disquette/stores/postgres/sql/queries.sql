-- Statements of the PostgreSQL store, one named block each ("-- name: x"), loaded by
-- disquette.stores.postgres.store_async. "{schema}" is the quoted schema, "{columns}" the columns
-- of disquette.job.Job in field order, "{done_columns}" the same read from the done table.
-- "{ready_channel}" is the schema's NOTIFY channel of ready jobs, "{done_channel}" that of
-- result waiters, as literals (for the maintenance, which every statement that reads may
-- run, and for resolve_children). "{dependency_columns}" are a job's parents and policy.
--
-- Dependencies (009_dependencies.sql): every statement that ends a job that was pending
-- (ack, fail for good, cancel, delete, expiry) calls resolve_children for the jobs it ended
-- whose has_children is set, in the same statement, and returns the queues it made jobs
-- ready in (NULL when there were none: the usual case costs a filter over its own rows).
-- Parameters are psycopg's %(name)s; times are the store clock's, never now().
--
-- Operations that change one job (ack, nack, fail) do not run the maintenance first, to stay
-- one statement (and to take no locks but the job's own inside a caller's transaction);
-- instead they treat a job as the maintenance would have left it: past its TTL it is gone.
-- Past its lease it is still its delivery's until a claim takes it (see ack).
--
-- NOTIFYs: on %(channel)s, the name of a queue where jobs became ready (for a blocked get);
-- on %(done_channel)s, the id of a job that ended (done, failed, cancelled, deleted) that a
-- wait is on, or an empty payload, "jobs are done or gone" (a flush). Each is sent only
-- when a process registered a waiter for it ({schema}.wake, wake_jobs and wake_done, see
-- 006_hot_paths.sql and 010_wakeups.sql): a
-- NOTIFY serializes commits cluster-wide even when nobody listens. Inside a caller's
-- transaction they go out at its commit, and never on a rollback.

-- name: insert
WITH added AS (
    INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state, created_at,
                               run_at, retry_after, expires_at, max_attempts, result_ttl,
                               headers)
    SELECT u.id, u.queue, u.body, u.encoding, u.type, u.priority, u.state, u.created_at,
           u.run_at, u.retry_after, u.expires_at, u.max_attempts, u.result_ttl,
           u.headers::json
    FROM unnest(%(ids)b::text[], %(queues)b::text[], %(bodies)b::bytea[],
                %(encodings)b::int2[], %(types)b::text[], %(priorities)b::int4[],
                %(states)b::int2[], %(created_at)b::float8[], %(run_at)b::float8[],
                %(retry_after)b::float8[], %(expires_at)b::float8[],
                %(max_attempts)b::int4[], %(result_ttl)b::float8[], %(headers)b::text[])
        AS u (id, queue, body, encoding, type, priority, state, created_at, run_at,
              retry_after, expires_at, max_attempts, result_ttl, headers)
    WHERE {schema}.accepts(u.queue)
      -- Ids are made by the client, so an add run again after a lost reply adds nothing,
      -- even for jobs a worker finished meanwhile (moved to done).
      AND NOT EXISTS (SELECT FROM {schema}.done AS d WHERE d.id = u.id)
    ON CONFLICT (id) DO NOTHING
    RETURNING queue, state)
SELECT {schema}.wake(%(channel)s, ready.queue)
FROM (SELECT DISTINCT queue FROM added WHERE state = 1) AS ready;

-- name: insert_unique
-- As insert, for jobs with unique keys (any job of the batch may have none): a job whose
-- key is held on "jobs" hits jobs_unique (ON CONFLICT: nothing), one whose key a done
-- job holds is filtered here. Returns the ids inserted; the store looks up the holders of
-- the others (unique_holders).
WITH added AS (
    INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state, created_at,
                               run_at, retry_after, expires_at, max_attempts, result_ttl,
                               unique_key, unique_states, headers)
    SELECT u.id, u.queue, u.body, u.encoding, u.type, u.priority, u.state, u.created_at,
           u.run_at, u.retry_after, u.expires_at, u.max_attempts, u.result_ttl,
           u.unique_key, u.unique_states, u.headers::json
    FROM unnest(%(ids)b::text[], %(queues)b::text[], %(bodies)b::bytea[],
                %(encodings)b::int2[], %(types)b::text[], %(priorities)b::int4[],
                %(states)b::int2[], %(created_at)b::float8[], %(run_at)b::float8[],
                %(retry_after)b::float8[], %(expires_at)b::float8[],
                %(max_attempts)b::int4[], %(result_ttl)b::float8[],
                %(unique_keys)b::text[], %(unique_states)b::int2[], %(headers)b::text[])
        AS u (id, queue, body, encoding, type, priority, state, created_at, run_at,
              retry_after, expires_at, max_attempts, result_ttl, unique_key, unique_states,
              headers)
    WHERE {schema}.accepts(u.queue)
      AND NOT EXISTS (SELECT FROM {schema}.done AS d WHERE d.id = u.id)
      AND NOT EXISTS (
          SELECT FROM {schema}.done AS d
          WHERE d.queue = u.queue AND d.unique_key = u.unique_key AND d.unique_key IS NOT NULL
            AND d.expires_at > %(now)s::float8)
    ON CONFLICT DO NOTHING
    RETURNING id, queue, state),
sent AS (
    SELECT {schema}.wake(%(channel)s, ready.queue)
    FROM (SELECT DISTINCT queue FROM added WHERE state = 1) AS ready)
SELECT added.id FROM added WHERE (SELECT count(*) FROM sent) >= 0;

-- name: insert_unique_one
-- insert_unique for one job, with scalar parameters (as insert_one).
WITH added AS (
    INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state, created_at,
                               run_at, retry_after, expires_at, max_attempts, result_ttl,
                               unique_key, unique_states, headers)
    SELECT %(id)s::text, %(queue)s::text, %(body)s::bytea, %(encoding)s::int2,
           %(type)s::text, %(priority)s::int4, %(state)s::int2, %(created_at)s::float8,
           %(run_at)s::float8, %(retry_after)s::float8, %(expires_at)s::float8,
           %(max_attempts)s::int4, %(result_ttl)s::float8, %(unique_key)s::text,
           %(unique_states)s::int2, %(headers)s::text::json
    WHERE {schema}.accepts(%(queue)s::text)
      AND NOT EXISTS (SELECT FROM {schema}.done WHERE id = %(id)s::text)
      AND NOT EXISTS (
          SELECT FROM {schema}.done AS d
          WHERE d.queue = %(queue)s::text AND d.unique_key = %(unique_key)s::text
            AND d.unique_key IS NOT NULL AND d.expires_at > %(now)s::float8)
    ON CONFLICT DO NOTHING
    RETURNING id, queue, state),
sent AS (SELECT {schema}.wake(%(channel)s, queue) FROM added WHERE state = 1)
SELECT added.id FROM added WHERE (SELECT count(*) FROM sent) >= 0;

-- name: unique_holders
-- The job holding each (queue, key) now, with its expires_at: a pending or failed one
-- through jobs_unique (its WHERE repeated, so that the index serves), else a done one; and
-- whether the job's own id is held (an add run again: its job is no duplicate).
SELECT u.id, h.id, h.expires_at,
       EXISTS (SELECT FROM {schema}.jobs AS o WHERE o.id = u.id)
           OR EXISTS (SELECT FROM {schema}.done AS o WHERE o.id = u.id)
FROM unnest(%(ids)b::text[], %(queues)b::text[], %(keys)b::text[]) AS u (id, queue, unique_key)
LEFT JOIN LATERAL (
    SELECT j.id, j.expires_at FROM {schema}.jobs AS j
    WHERE j.queue = u.queue AND j.unique_key = u.unique_key AND j.unique_key IS NOT NULL
      AND ((j.unique_states::int4 >> j.state::int4) & 1) = 1
    UNION ALL
    SELECT d.id, d.expires_at FROM {schema}.done AS d
    WHERE d.queue = u.queue AND d.unique_key = u.unique_key AND d.unique_key IS NOT NULL
      AND d.expires_at > %(now)s::float8
    LIMIT 1) AS h ON true;

-- name: take_back_done_held
-- After insert_unique, with a later snapshot, for the jobs it inserted whose key a done
-- job may hold: an ack that moved the holder to done committed while the insert waited
-- on jobs_unique, so its done row was not in the insert's snapshot. Such jobs go again.
DELETE FROM {schema}.jobs AS j
USING {schema}.done AS d
WHERE j.id = ANY(%(ids)b::text[]) AND d.queue = j.queue AND d.unique_key = j.unique_key
  AND d.unique_key IS NOT NULL AND d.expires_at > %(now)s::float8
RETURNING j.id, d.id;

-- name: delete_expired
-- A holder past its TTL is gone for every reader; the maintenance would delete it (and
-- resolve its children).
WITH gone AS (
    DELETE FROM {schema}.jobs WHERE id = ANY(%(ids)b::text[]) AND expires_at <= %(now)s::float8
    RETURNING id, state, has_children)
SELECT {schema}.resolve_children(array_agg(gone.id), 'expired', %(now)s::float8,
                                 {ready_channel}, {done_channel})
FROM gone WHERE gone.has_children AND gone.state IN (0, 1, 2, 6) HAVING count(*) > 0;

-- name: lock_parents
-- An add's parents that the jobs table holds (not past their TTL: gone for every reader),
-- with their states; the pending ones get has_children. The UPDATE locks them until the
-- add commits, so that a parent's end waits for the add's children and then resolves them
-- (009_dependencies.sql says how).
UPDATE {schema}.jobs SET has_children = has_children OR state IN (0, 1, 2, 6)
WHERE id = ANY(%(ids)b::text[]) AND (expires_at IS NULL OR expires_at > %(now)s::float8)
RETURNING id, state;

-- name: done_parents
-- After lock_parents, with a later snapshot: the parents it did not find that are done
-- (an ack that it waited for committed after its snapshot).
SELECT id FROM {schema}.done WHERE id = ANY(%(ids)b::text[]) AND expires_at > %(now)s::float8;

-- name: insert_dependants
-- As insert_unique, for a batch with dependencies (any of its jobs may have no parents, or
-- no key): each job comes with the state the store gave it after lock_parents (waiting,
-- ended at once by a parent that failed or was cancelled, or as usual) and its dependency
-- columns (depends_on as JSON text). Wakes the queues of ready jobs, and result waiters
-- when a job ended at once.
WITH added AS (
    INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state, created_at,
                               run_at, retry_after, expires_at, max_attempts, result_ttl,
                               unique_key, unique_states, headers, depends_on,
                               on_dependency_failure, pending_parents, has_children,
                               last_error, finished_at)
    SELECT u.id, u.queue, u.body, u.encoding, u.type, u.priority, u.state, u.created_at,
           u.run_at, u.retry_after, u.expires_at, u.max_attempts, u.result_ttl,
           u.unique_key, u.unique_states, u.headers::json,
           CASE WHEN u.depends_on IS NOT NULL
                THEN ARRAY(SELECT json_array_elements_text(u.depends_on::json)) END,
           u.policy, u.pending, u.has_children, u.last_error, u.finished_at
    FROM unnest(%(ids)b::text[], %(queues)b::text[], %(bodies)b::bytea[],
                %(encodings)b::int2[], %(types)b::text[], %(priorities)b::int4[],
                %(states)b::int2[], %(created_at)b::float8[], %(run_at)b::float8[],
                %(retry_after)b::float8[], %(expires_at)b::float8[],
                %(max_attempts)b::int4[], %(result_ttl)b::float8[],
                %(unique_keys)b::text[], %(unique_states)b::int2[], %(headers)b::text[],
                %(depends_on)b::text[], %(policies)b::int2[], %(pending)b::int4[],
                %(has_children)b::bool[], %(last_errors)b::text[], %(finished_at)b::float8[])
        AS u (id, queue, body, encoding, type, priority, state, created_at, run_at,
              retry_after, expires_at, max_attempts, result_ttl, unique_key, unique_states,
              headers, depends_on, policy, pending, has_children, last_error, finished_at)
    WHERE {schema}.accepts(u.queue)
      AND NOT EXISTS (SELECT FROM {schema}.done AS d WHERE d.id = u.id)
      AND NOT EXISTS (
          SELECT FROM {schema}.done AS d
          WHERE d.queue = u.queue AND d.unique_key = u.unique_key AND d.unique_key IS NOT NULL
            AND d.expires_at > %(now)s::float8)
    ON CONFLICT DO NOTHING
    RETURNING id, queue, state),
sent AS (
    SELECT {schema}.wake(%(channel)s, ready.queue)
    FROM (SELECT DISTINCT queue FROM added WHERE state = 1) AS ready
    UNION ALL
    SELECT {schema}.wake_done({done_channel})
    WHERE EXISTS (SELECT FROM added WHERE state IN (4, 5)))
SELECT added.id FROM added WHERE (SELECT count(*) FROM sent) >= 0;

-- name: insert_uniform
-- add_many's jobs share every setting: only ids and bodies travel as arrays.
WITH added AS (
    INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state, created_at,
                               run_at, retry_after, expires_at, max_attempts, result_ttl,
                               headers)
    SELECT b.id, %(queue)s::text, b.body, b.encoding, %(type)s::text, %(priority)s::int4,
           %(state)s::int2, %(created_at)s::float8, %(run_at)s::float8,
           %(retry_after)s::float8, %(expires_at)s::float8, %(max_attempts)s::int4,
           %(result_ttl)s::float8, %(headers)s::text::json
    FROM unnest(%(ids)b::text[], %(bodies)b::bytea[], %(encodings)b::int2[])
        AS b (id, body, encoding)
    WHERE {schema}.accepts(%(queue)s::text)
      AND NOT EXISTS (SELECT FROM {schema}.done AS d WHERE d.id = b.id)
    ON CONFLICT (id) DO NOTHING
    RETURNING 1)
SELECT {schema}.wake(%(channel)s, %(queue)s::text)
WHERE %(state)s::int2 = 1 AND EXISTS (SELECT FROM added);

-- name: insert_one
WITH added AS (
    INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state, created_at,
                               run_at, retry_after, expires_at, max_attempts, result_ttl,
                               headers)
    SELECT %(id)s::text, %(queue)s::text, %(body)s::bytea, %(encoding)s::int2,
           %(type)s::text, %(priority)s::int4, %(state)s::int2, %(created_at)s::float8,
           %(run_at)s::float8, %(retry_after)s::float8, %(expires_at)s::float8,
           %(max_attempts)s::int4, %(result_ttl)s::float8, %(headers)s::text::json
    WHERE {schema}.accepts(%(queue)s::text)
      AND NOT EXISTS (SELECT FROM {schema}.done WHERE id = %(id)s::text)
    ON CONFLICT (id) DO NOTHING
    RETURNING queue, state)
SELECT {schema}.wake(%(channel)s, queue) FROM added WHERE state = 1;

-- name: take_back_finished
-- After an add that ran again (its first reply lost), in its transaction: the jobs it put
-- back although an ack finished them while it ran (the ack's done row is in this
-- statement's snapshot, not in the insert's).
DELETE FROM {schema}.jobs AS j
WHERE j.id = ANY(%(ids)b::text[])
  AND EXISTS (SELECT FROM {schema}.done AS d WHERE d.id = j.id);

-- name: lock_queue
-- Serializes capped adds to one queue, so two of them cannot both see room for one more.
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0));

-- name: count_queued_up_to
SELECT count(*) FROM (
    SELECT 1 FROM {schema}.jobs WHERE queue = %(queue)s AND state = 1 LIMIT %(limit)s) AS held;

-- name: maintain
-- What time made due, at most a batch per step, by one process at a time (the others skip).
SELECT {schema}.maintain_due(%(now)s::float8, 1000, {ready_channel}, {done_channel});

-- name: maintain_all
-- Everything time made due, however much (recover_stale: an operator's call).
SELECT {schema}.maintain(%(now)s::float8, {ready_channel}, {done_channel});

-- name: maintainer_session
-- The maintainer's batches need not wait for the WAL flush: all they do (a promote, an
-- expiry, a requeue) follows from the clock and the rows, so one lost in a crash is applied
-- again by the next pass; a claim of a promoted job flushes the promote with its own commit.
SET synchronous_commit = off;

-- name: maintainer_lead
-- The maintainer's lease: a session lock, given up when its connection ends (or dies).
SELECT pg_try_advisory_lock(hashtextextended('disquette maintainer {schema}', 0));

-- name: maintainer_pass
-- One pass of the maintainer (011_maintainer.sql): batches until done or out of budget.
CALL {schema}.maintainer_pass(%(now)s::float8, 1000, %(lease)s::float8, %(budget)s::float8,
                              {ready_channel}, {done_channel}, NULL, NULL, NULL);

-- name: maintainer_resign
-- A maintainer that stops: claims apply the maintenance again at once (not after a lease).
DELETE FROM {schema}.maintainer;
SELECT pg_advisory_unlock(hashtextextended('disquette maintainer {schema}', 0));

-- name: prune_done
SELECT {schema}.prune_done(%(now)s::float8, %(batch)s::int4);

-- name: claim
-- lease_limited: lease_ready obeying the queues' flow limits (migrations 8 and 9).
SELECT {columns}, {dependency_columns}
FROM {schema}.lease_limited(%(queues)b::text[], %(count)s::int4, %(now)s::float8,
                            %(holder)s::text, {ready_channel}, {done_channel});

-- name: ack
-- The results, their encodings and the callers' deliveries come one per id (a NULL
-- result: none; a NULL delivery: by id, as Disque's ACKJOB). A delivery is the job's
-- attempts when the caller claimed it: a job delivered again since is left alone (nack,
-- fail and working check it the same way). An id given twice keeps its first result.
--
-- A delivery holds its job while it is active (state 2, its lease run out or not), and
-- once the maintenance requeued it for a lapsed lease until a claim takes it (state 1 with
-- a leased_at, see 004_lapsed.sql): acting on it then takes that requeue back, since the
-- lapse turned out to be no redelivery.
WITH given AS (
    SELECT DISTINCT ON (id) id, new_result, new_encoding, delivery
    FROM unnest(%(ids)b::text[], %(results)b::bytea[], %(encodings)b::int2[],
                %(attempts)b::int4[])
        WITH ORDINALITY AS given(id, new_result, new_encoding, delivery, position)
    ORDER BY id, position),
gone AS (
    DELETE FROM {schema}.jobs AS j
    USING given
    WHERE j.id = ANY(%(ids)b::text[]) AND j.id = given.id
      AND (given.delivery IS NULL OR j.attempts = given.delivery)
      AND (j.expires_at IS NULL OR j.expires_at > %(now)s::float8)
      AND j.state <> 5  -- cancelled is final: no ack makes it done
    RETURNING j.*, given.new_result, given.new_encoding),
kept AS (
    INSERT INTO {schema}.done (id, queue, body, encoding, type, priority, created_at, run_at,
                               retry_after, expires_at, max_attempts, result_ttl, attempts,
                               nacks, additional_deliveries, error_count, last_error, result,
                               result_encoding, finished_at, seq, unique_key, headers,
                               depends_on, on_dependency_failure)
    SELECT id, queue, body, encoding, type, priority, created_at, run_at,
           retry_after, %(now)s::float8 + result_ttl, max_attempts, result_ttl, attempts,
           nacks, additional_deliveries - (state = 1 AND leased_at IS NOT NULL)::int,
           error_count, last_error, new_result, new_encoding, %(now)s::float8, seq,
           -- Done keeps the key only when done counts (bit 8): see 005_cancel_unique_headers.sql.
           CASE WHEN unique_states & 8 <> 0 THEN unique_key END, headers, depends_on,
           on_dependency_failure
    FROM gone WHERE result_ttl > 0),
-- Not inlined (pg_notify is volatile): run once, and only if some job was acked.
sent AS (SELECT {schema}.wake_jobs(%(done_channel)s, ARRAY(SELECT gone.id FROM gone)) WHERE EXISTS (SELECT FROM gone))
-- The second column releases the waiting children of an acked job that has some (see the
-- header), one job at a time: a CASE in the select list, which costs the planner next to
-- nothing (this statement is planned on every call: its plans are custom).
SELECT gone.id,
       CASE WHEN gone.has_children AND gone.state IN (0, 1, 2, 6)
            THEN {schema}.resolve_children(ARRAY[gone.id], 'done', %(now)s::float8,
                                           {ready_channel}, {done_channel}) END
FROM gone LEFT JOIN sent ON true;

-- name: nack
WITH back AS (
    -- A lapsed job (see ack) is in its old place already.
    UPDATE {schema}.jobs AS j
    SET state = 1, nacks = j.nacks + 1, lease_until = NULL, leased_at = NULL,
        additional_deliveries = j.additional_deliveries - (j.state = 1)::int
    FROM unnest(%(ids)b::text[], %(attempts)b::int4[]) AS given(id, delivery)
    WHERE j.id = ANY(%(ids)b::text[]) AND j.id = given.id
      AND (j.state = 2 OR (j.state = 1 AND j.leased_at IS NOT NULL))
      AND (given.delivery IS NULL OR j.attempts = given.delivery)
      AND (j.expires_at IS NULL OR j.expires_at > %(now)s::float8)
    RETURNING j.id, j.queue)
SELECT back.id, back.queue
FROM back, LATERAL (SELECT {schema}.wake(%(channel)s, back.queue)) AS sent;

-- name: fail
WITH failed AS (
    UPDATE {schema}.jobs
    SET error_count = error_count + 1, last_error = %(error)s,
        lease_until = NULL, leased_at = NULL,
        state = CASE WHEN %(retry_at)s::float8 IS NULL THEN 4
                     WHEN %(retry_at)s::float8 <= %(now)s::float8 THEN 1
                     ELSE 0 END,
        run_at = coalesce(%(retry_at)s::float8, run_at),
        finished_at = CASE WHEN %(retry_at)s::float8 IS NULL THEN %(now)s::float8 END,
        expires_at = CASE WHEN %(retry_at)s::float8 IS NULL THEN NULL ELSE expires_at END,
        additional_deliveries = additional_deliveries - (state = 1)::int
    WHERE id = %(id)s AND (state = 2 OR (state = 1 AND leased_at IS NOT NULL))
      AND (%(attempts)s::int4 IS NULL OR attempts = %(attempts)s::int4)
      AND (expires_at IS NULL OR expires_at > %(now)s::float8)
    RETURNING id, queue, state, has_children),
-- Failed for good: its waiting children are resolved (see the header).
resolved AS (
    SELECT {schema}.resolve_children(ARRAY[failed.id], 'failed', %(now)s::float8,
                                     {ready_channel}, {done_channel}) AS queues
    FROM failed WHERE failed.state = 4 AND failed.has_children)
-- One job at most: ready again wakes its queue's getters, failed for good its waiters.
SELECT failed.queue, failed.state, resolved.queues FROM failed
LEFT JOIN LATERAL (
    SELECT CASE WHEN failed.state = 1 THEN {schema}.wake(%(channel)s, failed.queue)
                WHEN failed.state = 4
                THEN {schema}.wake_jobs(%(done_channel)s, ARRAY[failed.id]) END) AS sent
    ON true
LEFT JOIN resolved ON true;

-- name: working
-- A lapsed job (see ack) is leased again, to its delivery.
UPDATE {schema}.jobs
SET state = 2, lease_until = %(now)s::float8 + retry_after,
    additional_deliveries = additional_deliveries - (state = 1)::int
WHERE id = %(id)s AND (state = 2 OR (state = 1 AND leased_at IS NOT NULL)) AND retry_after > 0
  AND NOT cancel_requested AND (%(attempts)s::int4 IS NULL OR attempts = %(attempts)s::int4)
RETURNING lease_until;

-- name: progress
-- As working, recording the holder's progress (an at-most-once job keeps no lease).
UPDATE {schema}.jobs
SET progress = %(progress)s, state = 2,
    lease_until = CASE WHEN retry_after > 0 THEN %(now)s::float8 + retry_after END,
    additional_deliveries = additional_deliveries - (state = 1)::int
WHERE id = %(id)s AND (state = 2 OR (state = 1 AND leased_at IS NOT NULL))
  AND NOT cancel_requested AND (%(attempts)s::int4 IS NULL OR attempts = %(attempts)s::int4)
RETURNING lease_until;

-- name: cancel_pending
-- A scheduled, queued or waiting job (a lapsed one too: its requeue is taken back) ends
-- cancelled, kept for its result_ttl (the maintenance's expiry prunes it); its waiting
-- children are resolved (see the header).
WITH cancelled AS (
    UPDATE {schema}.jobs
    SET state = 5, finished_at = %(now)s::float8, expires_at = %(now)s::float8 + result_ttl,
        additional_deliveries = additional_deliveries - (state = 1 AND leased_at IS NOT NULL)::int,
        lease_until = NULL, leased_at = NULL
    WHERE id = %(id)s AND state IN (0, 1, 6)
    RETURNING id, has_children),
resolved AS (
    SELECT {schema}.resolve_children(ARRAY[cancelled.id], 'cancelled', %(now)s::float8,
                                     {ready_channel}, {done_channel}) AS queues
    FROM cancelled WHERE cancelled.has_children)
SELECT cancelled.id, resolved.queues FROM cancelled
LEFT JOIN LATERAL (SELECT {schema}.wake_jobs(%(done_channel)s, ARRAY[cancelled.id])) AS sent
    ON true
LEFT JOIN resolved ON true;

-- name: request_cancel
WITH requested AS (
    UPDATE {schema}.jobs SET cancel_requested = true
    WHERE id = %(id)s AND state = 2
    RETURNING id)
SELECT requested.id FROM requested
LEFT JOIN LATERAL (SELECT pg_notify(%(cancel_channel)s, '')) AS sent ON true;

-- name: cancel_held
-- The holder's delivery (see ack) ends its job cancelled.
WITH cancelled AS (
    UPDATE {schema}.jobs
    SET state = 5, finished_at = %(now)s::float8, expires_at = %(now)s::float8 + result_ttl,
        additional_deliveries = additional_deliveries - (state = 1)::int,
        lease_until = NULL, leased_at = NULL
    WHERE id = %(id)s AND (state = 2 OR (state = 1 AND leased_at IS NOT NULL))
      AND (%(attempts)s::int4 IS NULL OR attempts = %(attempts)s::int4)
    RETURNING id, has_children),
resolved AS (
    SELECT {schema}.resolve_children(ARRAY[cancelled.id], 'cancelled', %(now)s::float8,
                                     {ready_channel}, {done_channel}) AS queues
    FROM cancelled WHERE cancelled.has_children)
SELECT cancelled.id, resolved.queues FROM cancelled
LEFT JOIN LATERAL (SELECT {schema}.wake_jobs(%(done_channel)s, ARRAY[cancelled.id])) AS sent
    ON true
LEFT JOIN resolved ON true;

-- name: show
SELECT {columns}, {dependency_columns} FROM {schema}.jobs WHERE id = %(id)s
UNION ALL
SELECT {done_columns}, {dependency_columns} FROM {schema}.done
WHERE id = %(id)s AND expires_at > %(now)s::float8;

-- name: delete
WITH pending AS (
    DELETE FROM {schema}.jobs WHERE id = ANY(%(ids)b::text[])
    RETURNING id, state, has_children),
finished AS (
    DELETE FROM {schema}.done
    WHERE id = ANY(%(ids)b::text[]) AND expires_at > %(now)s::float8 RETURNING id),
counted AS (SELECT (SELECT count(*) FROM pending) + (SELECT count(*) FROM finished) AS n),
resolved AS (
    SELECT {schema}.resolve_children(array_agg(pending.id), 'deleted', %(now)s::float8,
                                     {ready_channel}, {done_channel}) AS queues
    FROM pending WHERE pending.has_children AND pending.state IN (0, 1, 2, 6)
    HAVING count(*) > 0)
SELECT counted.n, resolved.queues FROM counted
LEFT JOIN LATERAL (
    SELECT {schema}.wake_jobs(%(done_channel)s, ARRAY(
        SELECT pending.id FROM pending UNION ALL SELECT finished.id FROM finished))
    WHERE counted.n > 0) AS sent ON true
LEFT JOIN resolved ON true;

-- name: qlen
SELECT count(*) FROM {schema}.jobs WHERE queue = %(queue)s AND state = 1;

-- name: peek
SELECT {columns} FROM {schema}.jobs WHERE queue = %(queue)s AND state = 1
ORDER BY priority, run_at, seq LIMIT %(count)s;

-- name: failed_in_queue
SELECT {columns} FROM {schema}.jobs WHERE queue = %(queue)s AND state = 4
ORDER BY finished_at, seq LIMIT %(limit)s;

-- name: failed_all
SELECT {columns} FROM {schema}.jobs WHERE state = 4 ORDER BY finished_at, seq LIMIT %(limit)s;

-- name: retry
-- A failed job resolved its children when it failed: has_children is cleared, so that its
-- next end does not count it for them again.
WITH again AS (
    UPDATE {schema}.jobs
    SET state = 1, run_at = %(now)s::float8, finished_at = NULL, has_children = false
    WHERE id = %(id)s AND state = 4
    RETURNING queue)
SELECT again.queue FROM again, LATERAL (SELECT {schema}.wake(%(channel)s, again.queue)) AS sent;

-- name: state_of
SELECT state FROM {schema}.jobs WHERE id = %(id)s
UNION ALL
SELECT 3 FROM {schema}.done WHERE id = %(id)s AND expires_at > %(now)s::float8;

-- name: pause
INSERT INTO {schema}.paused_queues AS p (queue, mode) VALUES (%(queue)s, 2)
ON CONFLICT (queue) DO UPDATE SET mode = p.mode | 2;

-- name: resume
WITH resumed AS (
    UPDATE {schema}.paused_queues SET mode = mode & ~2
    WHERE queue = %(queue)s AND mode & 2 <> 0 RETURNING queue)
SELECT {schema}.wake(%(channel)s, %(queue)s) FROM resumed;

-- name: set_pause
WITH changed AS (
    INSERT INTO {schema}.paused_queues (queue, mode) VALUES (%(queue)s, %(mode)s::int2)
    ON CONFLICT (queue) DO UPDATE SET mode = excluded.mode
    RETURNING mode)
SELECT {schema}.wake(%(channel)s, %(queue)s) FROM changed WHERE changed.mode & 2 = 0;

-- name: pause_mode
SELECT mode FROM {schema}.paused_queues WHERE queue = %(queue)s;

-- name: paused
SELECT queue FROM {schema}.paused_queues WHERE mode & 2 <> 0 ORDER BY queue;

-- name: pause_modes
SELECT queue, mode FROM {schema}.paused_queues WHERE mode <> 0;

-- name: enqueue
WITH back AS (
    UPDATE {schema}.jobs
    SET state = 1, lease_until = NULL, leased_at = NULL,
        additional_deliveries = additional_deliveries + (attempts > 0)::int
    WHERE id = ANY(%(ids)b::text[]) AND state IN (0, 2)
      AND NOT (attempts > 0 AND retry_after <= 0)
    RETURNING id, queue)
SELECT back.id, back.queue
FROM back, LATERAL (SELECT {schema}.wake(%(channel)s, back.queue)) AS sent;

-- name: dequeue
-- Leased to nobody, and attempts stay: no earlier delivery's holder may release the job.
WITH taken AS (
    UPDATE {schema}.jobs
    SET state = 2, leased_at = %(now)s::float8,
        lease_until = CASE WHEN retry_after > 0 THEN %(now)s::float8 + retry_after END
    WHERE id = ANY(%(ids)b::text[]) AND state = 1
    RETURNING id),
unheld AS (
    DELETE FROM {schema}.holders AS h
    WHERE h.id = ANY(ARRAY(SELECT taken.id FROM taken)))
SELECT count(*) FROM taken;

-- name: scan
SELECT * FROM (
    SELECT {columns} FROM {schema}.jobs WHERE seq > %(after)s::int8
    UNION ALL
    SELECT {done_columns} FROM {schema}.done
    WHERE seq > %(after)s::int8 AND expires_at > %(now)s::float8) AS j
WHERE (%(queue)s::text IS NULL OR j.queue = %(queue)s::text)
  AND (%(states)s::int2[] IS NULL OR j.state = ANY(%(states)s::int2[]))
ORDER BY j.seq LIMIT %(count)s::int4;

-- name: queues
SELECT queue, sum(queued)::int8 FROM (
    SELECT queue, count(*) FILTER (WHERE state = 1) AS queued
    FROM {schema}.jobs GROUP BY queue
    UNION ALL
    SELECT queue, 0 FROM {schema}.done WHERE expires_at > %(now)s::float8 GROUP BY queue
) AS q GROUP BY queue;

-- name: flush_jobs
TRUNCATE {schema}.jobs, {schema}.done;

-- name: flush_pauses
DELETE FROM {schema}.paused_queues;

-- name: notify_done
SELECT {schema}.wake_done(%(done_channel)s);

-- name: register_node
INSERT INTO {schema}.nodes (id, address, expires_at)
VALUES (%(id)s, %(address)s, %(expires_at)s::float8)
ON CONFLICT (id) DO UPDATE SET address = excluded.address, expires_at = excluded.expires_at;

-- name: forget_lapsed_nodes
DELETE FROM {schema}.nodes WHERE expires_at <= %(now)s::float8;

-- name: unregister_node
DELETE FROM {schema}.nodes WHERE id = %(id)s;

-- name: nodes
SELECT id, address, expires_at FROM {schema}.nodes WHERE expires_at > %(now)s::float8
ORDER BY id;

-- name: register_schedule
INSERT INTO {schema}.schedules (name, definition) VALUES (%(name)s, %(definition)s)
ON CONFLICT (name) DO UPDATE SET definition = excluded.definition;

-- name: schedules
SELECT name, definition, paused FROM {schema}.schedules ORDER BY name;

-- name: pause_schedule
UPDATE {schema}.schedules SET paused = %(paused)s WHERE name = %(name)s;

-- name: stats
SELECT queue, type, state, count(*),
       max(CASE WHEN state != 3 THEN error_count ELSE 0 END),
       min(CASE WHEN state IN (0, 1, 2) THEN run_at END)
FROM {schema}.jobs GROUP BY queue, type, state
UNION ALL
SELECT queue, type, 3, count(*), 0, NULL
FROM {schema}.done WHERE expires_at > %(now)s::float8 GROUP BY queue, type;

-- name: requeue_leased_before
WITH stale AS (
    UPDATE {schema}.jobs
    SET state = 1, lease_until = NULL, leased_at = NULL,
        additional_deliveries = additional_deliveries + 1
    WHERE state = 2 AND leased_at <= %(before)s::float8
    RETURNING queue)
SELECT stale.queue FROM stale, LATERAL (SELECT {schema}.wake(%(channel)s, stale.queue)) AS sent;

-- name: release_holder
-- What a lapsed lease does, now, to every active job of a dead holder (after the
-- maintenance); an at-most-once job is failed instead, as fail does with no retry_at.
-- Only a job still on the delivery its holder row was written for (same attempts) is the
-- holder's: a later claim, of any version, took it over. The holder's rows all go.
WITH mine AS (
    DELETE FROM {schema}.holders WHERE holder = %(holder)s RETURNING id, attempts),
released AS (
    UPDATE {schema}.jobs AS j
    SET state = CASE WHEN j.retry_after > 0 THEN 1 ELSE 4 END,
        lease_until = NULL, leased_at = NULL,
        additional_deliveries = j.additional_deliveries + (j.retry_after > 0)::int,
        error_count = j.error_count + (j.retry_after <= 0)::int,
        last_error = CASE WHEN j.retry_after > 0 THEN j.last_error ELSE %(error)s END,
        finished_at = CASE WHEN j.retry_after > 0 THEN j.finished_at
                           ELSE %(now)s::float8 END,
        expires_at = CASE WHEN j.retry_after > 0 THEN j.expires_at END
    FROM mine
    WHERE j.id = ANY(ARRAY(SELECT m.id FROM mine AS m)) AND j.id = mine.id
      AND j.state = 2 AND j.attempts = mine.attempts
    RETURNING j.id, j.queue, j.state, j.has_children),
-- The at-most-once jobs failed for good: their waiting children are resolved.
resolved AS (
    SELECT {schema}.resolve_children(array_agg(released.id), 'failed', %(now)s::float8,
                                     {ready_channel}, {done_channel}) AS queues
    FROM released WHERE released.state = 4 AND released.has_children HAVING count(*) > 0)
SELECT released.queue, released.state, resolved.queues FROM released
LEFT JOIN LATERAL (
    SELECT CASE WHEN released.state = 1 THEN {schema}.wake(%(channel)s, released.queue)
                ELSE {schema}.wake_jobs(%(done_channel)s, ARRAY[released.id]) END) AS sent
    ON true
LEFT JOIN resolved ON true;

-- name: prune_holders
-- Holder rows of deliveries that are over (the job was finished, deleted, expired or
-- delivered again): what keeps the table the size of the held jobs.
DELETE FROM {schema}.holders AS h
WHERE NOT EXISTS (
    SELECT FROM {schema}.jobs AS j WHERE j.id = h.id AND j.attempts = h.attempts);

-- name: synchronous_standbys
-- Standbys that a commit with synchronous_commit = remote_apply waits for.
SELECT count(*) FROM pg_stat_replication
WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum');

-- name: standbys_applied
SELECT count(*) FROM pg_stat_replication
WHERE state = 'streaming' AND replay_lsn >= %(lsn)s::pg_lsn;

-- name: vacuum
VACUUM (SKIP_LOCKED, TRUNCATE false) {schema}.jobs;

-- name: register_waiters
-- On a listener's own connection: what its process waits for (kinds: 1 a queue, 2 done).
INSERT INTO {schema}.waiters (kind, name, pid, started)
SELECT w.kind, w.name, a.pid, a.backend_start
FROM unnest(%(kinds)s::int2[], %(names)s::text[]) AS w (kind, name)
JOIN pg_stat_activity AS a ON a.pid = pg_backend_pid()
ON CONFLICT DO NOTHING;

-- name: register_job_waiters
-- A wait's job (kind 3), for the listener backend %(pid)s started at %(started)s, before
-- the wait reads it (010_wakeups.sql): FOR SHARE, so that an end of the job racing this
-- either waits for this commit and then NOTIFYs, or is seen by the read. A job that is
-- no longer in the jobs table has ended: nothing to register.
INSERT INTO {schema}.waiters (kind, name, pid, started)
SELECT 3, j.id, %(pid)s::int4, %(started)s::timestamptz
FROM (SELECT j.id FROM {schema}.jobs AS j WHERE j.id = ANY(%(ids)s::text[]) FOR SHARE) AS j
ON CONFLICT DO NOTHING;

-- name: listener_backend
SELECT a.pid, a.backend_start FROM pg_stat_activity AS a WHERE a.pid = pg_backend_pid();

-- name: unregister_job_waiters
DELETE FROM {schema}.waiters AS w
WHERE w.kind = 3 AND w.name = ANY(%(ids)s::text[]) AND w.pid = pg_backend_pid();

-- name: unregister_waiters
DELETE FROM {schema}.waiters WHERE pid = pg_backend_pid();

-- name: unregister_some_waiters
DELETE FROM {schema}.waiters AS w
USING unnest(%(kinds)s::int2[], %(names)s::text[]) AS u (kind, name)
WHERE w.pid = pg_backend_pid() AND w.kind = u.kind AND w.name = u.name;

-- name: forget_dead_waiters
-- Rows of backends that are gone (a process that died): they only cost NOTIFYs.
DELETE FROM {schema}.waiters AS w
WHERE NOT EXISTS (
    SELECT FROM pg_stat_activity AS a WHERE a.pid = w.pid AND a.backend_start = w.started);

-- name: register_worker
INSERT INTO {schema}.workers (id, info, expires_at)
VALUES (%(id)s, %(info)s, %(expires_at)s::float8)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at;

-- name: unregister_worker
DELETE FROM {schema}.workers WHERE id = %(id)s;

-- name: forget_workers
DELETE FROM {schema}.workers WHERE expires_at <= %(now)s::float8;

-- name: workers
SELECT info FROM {schema}.workers WHERE expires_at > %(now)s::float8 ORDER BY id;

-- name: record_rollup
INSERT INTO {schema}.rollups AS r (resolution, start, queue, type, completed, errors, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15)
VALUES (%(resolution)s, %(start)s::float8, %(queue)s, %(type)s, %(completed)s, %(errors)s, %(h0)s, %(h1)s, %(h2)s, %(h3)s, %(h4)s, %(h5)s, %(h6)s, %(h7)s, %(h8)s, %(h9)s, %(h10)s, %(h11)s, %(h12)s, %(h13)s, %(h14)s, %(h15)s)
ON CONFLICT (resolution, start, queue, type) DO UPDATE SET
    completed = r.completed + excluded.completed,
    errors = r.errors + excluded.errors,
    h0 = r.h0 + excluded.h0,
    h1 = r.h1 + excluded.h1,
    h2 = r.h2 + excluded.h2,
    h3 = r.h3 + excluded.h3,
    h4 = r.h4 + excluded.h4,
    h5 = r.h5 + excluded.h5,
    h6 = r.h6 + excluded.h6,
    h7 = r.h7 + excluded.h7,
    h8 = r.h8 + excluded.h8,
    h9 = r.h9 + excluded.h9,
    h10 = r.h10 + excluded.h10,
    h11 = r.h11 + excluded.h11,
    h12 = r.h12 + excluded.h12,
    h13 = r.h13 + excluded.h13,
    h14 = r.h14 + excluded.h14,
    h15 = r.h15 + excluded.h15;

-- name: prune_rollups
DELETE FROM {schema}.rollups WHERE resolution = %(resolution)s AND start < %(before)s::float8;

-- name: rollups
SELECT resolution, start, queue, type, completed, errors, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15 FROM {schema}.rollups
WHERE resolution = %(resolution)s AND start >= %(since)s::float8
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(type)s::text IS NULL OR type = %(type)s::text)
ORDER BY start, queue, type;

-- name: filtered_jobs
-- The jobs and the done rows not yet pruned, as one relation; the filter's terms are
-- pushed into both arms (done rows have state 3), so each arm uses its own indexes.
SELECT * FROM (
    SELECT {columns} FROM {schema}.jobs
    UNION ALL
    SELECT {done_columns} FROM {schema}.done WHERE expires_at > %(now)s::float8) AS j
-- name: set_limits
-- Flow limits (issue 16): set (a rate's bucket full) or replace a queue's limits.
INSERT INTO {schema}.queue_limits (queue, concurrency, rate_count, rate_per, tokens, filled_at)
VALUES (%(queue)s, %(concurrency)s::int4, %(rate_count)s::int4, %(rate_per)s::float8,
        %(rate_count)s::float8, %(now)s::float8)
ON CONFLICT (queue) DO UPDATE SET concurrency = excluded.concurrency,
    rate_count = excluded.rate_count, rate_per = excluded.rate_per, tokens = excluded.tokens,
    filled_at = excluded.filled_at;

-- name: clear_limits
DELETE FROM {schema}.queue_limits WHERE queue = %(queue)s;

-- name: all_limits
SELECT queue, concurrency, rate_count, rate_per FROM {schema}.queue_limits ORDER BY queue;

-- Statements of the PostgreSQL store, one named block each ("-- name: x"), loaded by
-- disquette._async.stores.postgres. "{schema}" is the quoted schema, "{columns}" the columns
-- of disquette.job.Job in field order, "{done_columns}" the same read from the done table.
-- Parameters are psycopg's %(name)s; times are the store clock's, never now().
--
-- Operations that change one job (ack, nack, fail) do not run the maintenance first, to stay
-- one statement (and to take no locks but the job's own inside a caller's transaction);
-- instead they treat a job as the maintenance would have left it: past its TTL it is gone,
-- past its lease it is no longer leased.

-- name: insert
WITH added AS (
    INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state, created_at,
                               run_at, retry_after, expires_at, max_attempts, result_ttl)
    SELECT * FROM unnest(%(ids)b::text[], %(queues)b::text[], %(bodies)b::bytea[],
                         %(encodings)b::int2[], %(types)b::text[], %(priorities)b::int4[],
                         %(states)b::int2[], %(created_at)b::float8[], %(run_at)b::float8[],
                         %(retry_after)b::float8[], %(expires_at)b::float8[],
                         %(max_attempts)b::int4[], %(result_ttl)b::float8[])
    -- Ids are made by the client, so an add retried after a lost connection is a no-op.
    ON CONFLICT (id) DO NOTHING
    RETURNING queue, state)
SELECT pg_notify(%(channel)s, ready.queue)
FROM (SELECT DISTINCT queue FROM added WHERE state = 1) AS ready;

-- name: insert_uniform
-- add_many's jobs share every setting: only ids and bodies travel as arrays.
WITH added AS (
    INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state, created_at,
                               run_at, retry_after, expires_at, max_attempts, result_ttl)
    SELECT b.id, %(queue)s::text, b.body, b.encoding, %(type)s::text, %(priority)s::int4,
           %(state)s::int2, %(created_at)s::float8, %(run_at)s::float8,
           %(retry_after)s::float8, %(expires_at)s::float8, %(max_attempts)s::int4,
           %(result_ttl)s::float8
    FROM unnest(%(ids)b::text[], %(bodies)b::bytea[], %(encodings)b::int2[])
        AS b (id, body, encoding)
    ON CONFLICT (id) DO NOTHING
    RETURNING 1)
SELECT pg_notify(%(channel)s, %(queue)s::text)
WHERE %(state)s::int2 = 1 AND EXISTS (SELECT FROM added);

-- name: insert_one
WITH added AS (
    INSERT INTO {schema}.jobs (id, queue, body, encoding, type, priority, state, created_at,
                               run_at, retry_after, expires_at, max_attempts, result_ttl)
    VALUES (%(id)s, %(queue)s, %(body)s, %(encoding)s, %(type)s, %(priority)s, %(state)s,
            %(created_at)s, %(run_at)s, %(retry_after)s, %(expires_at)s, %(max_attempts)s,
            %(result_ttl)s)
    ON CONFLICT (id) DO NOTHING
    RETURNING queue, state)
SELECT pg_notify(%(channel)s, queue) FROM added WHERE state = 1;

-- name: lock_queue
-- Serializes capped adds to one queue, so two of them cannot both see room for one more.
SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0));

-- name: count_queued_up_to
SELECT count(*) FROM (
    SELECT 1 FROM {schema}.jobs WHERE queue = %(queue)s AND state = 1 LIMIT %(limit)s) AS held;

-- name: maintain
SELECT {schema}.maintain(%(now)s::float8);

-- name: claim
SELECT * FROM {schema}.claim(%(queues)b::text[], %(count)s::int4, %(now)s::float8);

-- name: ack
WITH gone AS (
    DELETE FROM {schema}.jobs
    WHERE id = ANY(%(ids)b::text[]) AND (expires_at IS NULL OR expires_at > %(now)s::float8)
    RETURNING *),
kept AS (
    INSERT INTO {schema}.done (id, queue, body, encoding, type, priority, created_at, run_at,
                               retry_after, expires_at, max_attempts, result_ttl, attempts,
                               nacks, additional_deliveries, error_count, last_error, result,
                               result_encoding, finished_at, seq)
    SELECT id, queue, body, encoding, type, priority, created_at, run_at, retry_after,
           %(now)s::float8 + result_ttl, max_attempts, result_ttl, attempts, nacks,
           -- a lapsed lease counts as the redelivery the maintenance would have made
           additional_deliveries
               + CASE WHEN state = 2 AND lease_until <= %(now)s::float8 THEN 1 ELSE 0 END,
           error_count, last_error, %(result)s::bytea, %(encoding)s::int2, %(now)s::float8,
           seq
    FROM gone WHERE result_ttl > 0)
SELECT count(*) FROM gone;

-- name: nack
WITH back AS (
    UPDATE {schema}.jobs
    SET state = 1, nacks = nacks + 1, lease_until = NULL, leased_at = NULL
    WHERE id = ANY(%(ids)b::text[]) AND state = 2
      AND (lease_until IS NULL OR lease_until > %(now)s::float8)
      AND (expires_at IS NULL OR expires_at > %(now)s::float8)
    RETURNING queue)
SELECT back.queue FROM back, LATERAL (SELECT pg_notify(%(channel)s, back.queue)) AS sent;

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
        expires_at = CASE WHEN %(retry_at)s::float8 IS NULL THEN NULL ELSE expires_at END
    WHERE id = %(id)s AND state = 2
      AND (lease_until IS NULL OR lease_until > %(now)s::float8)
      AND (expires_at IS NULL OR expires_at > %(now)s::float8)
    RETURNING queue, state)
SELECT failed.queue, failed.state FROM failed
LEFT JOIN LATERAL (SELECT pg_notify(%(channel)s, failed.queue) WHERE failed.state = 1) AS sent
    ON true;

-- name: working
UPDATE {schema}.jobs SET lease_until = %(now)s::float8 + retry_after
WHERE id = %(id)s AND state = 2 AND retry_after > 0
RETURNING lease_until;

-- name: show
SELECT {columns} FROM {schema}.jobs WHERE id = %(id)s
UNION ALL
SELECT {done_columns} FROM {schema}.done WHERE id = %(id)s AND expires_at > %(now)s::float8;

-- name: delete
WITH pending AS (
    DELETE FROM {schema}.jobs WHERE id = ANY(%(ids)b::text[]) RETURNING 1),
finished AS (
    DELETE FROM {schema}.done
    WHERE id = ANY(%(ids)b::text[]) AND expires_at > %(now)s::float8 RETURNING 1)
SELECT (SELECT count(*) FROM pending) + (SELECT count(*) FROM finished);

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
WITH again AS (
    UPDATE {schema}.jobs SET state = 1, run_at = %(now)s::float8, finished_at = NULL
    WHERE id = %(id)s AND state = 4
    RETURNING queue)
SELECT again.queue FROM again, LATERAL (SELECT pg_notify(%(channel)s, again.queue)) AS sent;

-- name: state_of
SELECT state FROM {schema}.jobs WHERE id = %(id)s
UNION ALL
SELECT 3 FROM {schema}.done WHERE id = %(id)s AND expires_at > %(now)s::float8;

-- name: pause
INSERT INTO {schema}.paused_queues (queue) VALUES (%(queue)s) ON CONFLICT DO NOTHING;

-- name: resume
WITH resumed AS (
    DELETE FROM {schema}.paused_queues WHERE queue = %(queue)s RETURNING queue)
SELECT pg_notify(%(channel)s, %(queue)s) FROM resumed;

-- name: paused
SELECT queue FROM {schema}.paused_queues ORDER BY queue;

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
SELECT stale.queue FROM stale, LATERAL (SELECT pg_notify(%(channel)s, stale.queue)) AS sent;

-- name: synchronous_standbys
-- Standbys that a commit with synchronous_commit = remote_apply waits for.
SELECT count(*) FROM pg_stat_replication
WHERE state = 'streaming' AND sync_state IN ('sync', 'quorum');

-- name: standbys_applied
SELECT count(*) FROM pg_stat_replication
WHERE state = 'streaming' AND replay_lsn >= %(lsn)s::pg_lsn;

-- name: vacuum
VACUUM (SKIP_LOCKED, TRUNCATE false) {schema}.jobs;

-- Statements of the SQLite store, one named block each ("-- name: x"), loaded by
-- disquette.stores.sqlite. States: 0 scheduled, 1 queued, 2 active, 3 done, 4 failed,
-- 5 cancelled (kept, as done jobs are, until expires_at = finished_at + result_ttl),
-- 6 waiting (added with parents not yet done: see migrate_dependencies).

-- name: schema
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,          -- enqueue order; rowid, so no extra index
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    state INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    run_at REAL NOT NULL,
    created_at REAL NOT NULL,
    body BLOB NOT NULL,
    encoding INTEGER NOT NULL,
    type TEXT,
    retry_after REAL NOT NULL,
    expires_at REAL,                  -- TTL while pending, result retention once done
    max_attempts INTEGER NOT NULL,
    result_ttl REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    nacks INTEGER NOT NULL DEFAULT 0,
    additional_deliveries INTEGER NOT NULL DEFAULT 0,
    error_count INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    lease_until REAL,
    leased_at REAL,
    result BLOB,
    result_encoding INTEGER NOT NULL DEFAULT 0,
    finished_at REAL
);
-- The claim walks this index from its first entry: with 1M queued jobs a claim reads
-- one index page per queue ("SEARCH jobs USING INDEX jobs_ready (queue=?)").
CREATE INDEX IF NOT EXISTS jobs_ready ON jobs(queue, priority, run_at, seq) WHERE state = 1;
CREATE INDEX IF NOT EXISTS jobs_scheduled ON jobs(run_at) WHERE state = 0;
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs(lease_until) WHERE state = 2;
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs(expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_failed ON jobs(queue, finished_at) WHERE state = 4;
CREATE TABLE IF NOT EXISTS paused_queues (queue TEXT PRIMARY KEY) WITHOUT ROWID;

-- name: migrate_2
-- Version 2: pause modes (bit 1 refuses adds, bit 2 stops delivery; existing rows were
-- paused for delivery) and the node registry of a pool of Disque-protocol servers.
ALTER TABLE paused_queues ADD COLUMN mode INTEGER NOT NULL DEFAULT 2;
CREATE TABLE IF NOT EXISTS nodes (
    id TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;

-- name: migrate_3
-- Version 3: the holder of each lease (the worker process it went to, if it said), so that
-- a supervisor can give a dead process's jobs back at once (release_holder). Set by the
-- claim, cleared with the lease; release_holder finds a holder's jobs by walking the
-- jobs_leases index (active jobs only), so no index is added to the claim's work.
-- holder_attempts is the job's attempts when the claim named the holder: the holder is
-- only right while they still match, since a process of the previous version claims
-- (attempts + 1) without knowing the holder column, let alone clearing it.
ALTER TABLE jobs ADD COLUMN holder TEXT;
ALTER TABLE jobs ADD COLUMN holder_attempts INTEGER;

-- name: migrate_4
-- Version 4 (issue 13): cancellation and progress, unique jobs, headers.
-- Cancellation and progress. cancel_requested is set on an active job someone asked to
-- cancel (working and progress then refuse it, and its holder ends it in state
-- 5, cancelled); progress is the JSON text its holder last reported.
ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN progress TEXT;
-- Unique jobs. A job holds unique_key in its queue while the bit of its state
-- (1 << state) is set in unique_states; this index makes two holders impossible whoever
-- writes, and leaves the key free as soon as its holder moves to a state that does not
-- count (no statement of a transition has to know about keys).
ALTER TABLE jobs ADD COLUMN unique_key TEXT;
ALTER TABLE jobs ADD COLUMN unique_states INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique ON jobs(queue, unique_key)
WHERE unique_key IS NOT NULL AND (unique_states >> state) & 1;
-- Headers, as JSON text; NULL (no bytes in the row) when it has none.
-- Adding a nullable column rewrites nothing, and a process of the previous version names
-- its columns, so it goes on working (its jobs have no headers).
ALTER TABLE jobs ADD COLUMN headers TEXT;
-- Schedules: periodic jobs' definitions (JSON text, see ScheduleInfo.definition), written
-- by every scheduler at its start; paused is the operator's and outlives re-registering.
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    definition TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- name: migrate_5
-- Version 5 (issue 14): what dashboards read. The worker registry (each worker process
-- heartbeats its row; a row whose expires_at passed is forgotten by the next read); the
-- rollups (one row per resolution, period start, queue and type, summed into by every
-- worker's flush; h0..h15 count runs per duration bucket, see DURATION_BUCKETS); and an
-- index on (queue, seq) so that a filtered jobs page walks one queue's jobs in enqueue
-- order (newest first) rather than the whole table. Its columns never change after the
-- insert, so a claim or an ack never writes it.
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    info TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollups (
    resolution TEXT NOT NULL,
    start REAL NOT NULL,
    queue TEXT NOT NULL,
    type TEXT NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    errors INTEGER NOT NULL DEFAULT 0,
    h0 INTEGER NOT NULL DEFAULT 0,
    h1 INTEGER NOT NULL DEFAULT 0,
    h2 INTEGER NOT NULL DEFAULT 0,
    h3 INTEGER NOT NULL DEFAULT 0,
    h4 INTEGER NOT NULL DEFAULT 0,
    h5 INTEGER NOT NULL DEFAULT 0,
    h6 INTEGER NOT NULL DEFAULT 0,
    h7 INTEGER NOT NULL DEFAULT 0,
    h8 INTEGER NOT NULL DEFAULT 0,
    h9 INTEGER NOT NULL DEFAULT 0,
    h10 INTEGER NOT NULL DEFAULT 0,
    h11 INTEGER NOT NULL DEFAULT 0,
    h12 INTEGER NOT NULL DEFAULT 0,
    h13 INTEGER NOT NULL DEFAULT 0,
    h14 INTEGER NOT NULL DEFAULT 0,
    h15 INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (resolution, start, queue, type)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_queue_seq ON jobs(queue, seq);

-- name: insert
-- Nothing is inserted into a queue paused for input (the store then raises QueuePaused),
-- nor for an id the file holds in any state (done jobs stay in this table until pruned).
INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,
                  retry_after, expires_at, max_attempts, result_ttl, headers)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14
WHERE NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = ?2 AND mode & 1)
ON CONFLICT (id) DO NOTHING;

-- name: insert_unique
-- As insert, with a unique key (the caller looked for its holder in this transaction).
INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,
                  retry_after, expires_at, max_attempts, result_ttl, headers, unique_key,
                  unique_states)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
ON CONFLICT (id) DO NOTHING;

-- name: insert_unique_one
-- One unique job on its own, in one statement: nothing is inserted when its queue is
-- paused for input, its id is held, or its key is (jobs_unique: no conflict target, so
-- DO NOTHING covers that index too); the store then finds out which, in a transaction.
INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,
                  retry_after, expires_at, max_attempts, result_ttl, headers, unique_key,
                  unique_states)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16
WHERE NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = ?2 AND mode & 1)
ON CONFLICT DO NOTHING;

-- name: unique_holder
-- The terms of jobs_unique's WHERE, so that the lookup walks that index.
SELECT id, expires_at FROM jobs
WHERE queue = ? AND unique_key = ? AND unique_key IS NOT NULL AND (unique_states >> state) & 1;

-- name: paused_in
SELECT queue FROM paused_queues
WHERE mode & 1 AND queue IN (SELECT value FROM json_each(?)) LIMIT 1;

-- name: count_queued_up_to
-- INDEXED BY here, in ready_queues and in qlen: without statistics SQLite took the
-- dashboards' jobs_queue_seq for "queue = ? AND state = 1" and walked the queue's done
-- rows too (qlen of 10,000 ready among 20,000: 2,510 us against 416 us).
SELECT count(*) FROM (SELECT 1 FROM jobs INDEXED BY jobs_ready
                      WHERE queue = ? AND state = 1 LIMIT ?);

-- name: next_due
-- When time next changes something (an expiry, a scheduled job, a lapsed lease): the
-- store skips applying due changes until then, unless another connection committed.
SELECT min(
    coalesce((SELECT min(expires_at) FROM jobs WHERE expires_at IS NOT NULL), 1e300),
    coalesce((SELECT min(run_at) FROM jobs WHERE state = 0), 1e300),
    coalesce((SELECT min(lease_until) FROM jobs WHERE state = 2), 1e300));

-- name: ready_queues
-- Which of these queues (a JSON array) hold a ready job: a read, so that a claim over
-- empty queues never waits for (nor takes) the write lock.
SELECT value FROM json_each(:queues)
WHERE EXISTS (SELECT 1 FROM jobs INDEXED BY jobs_ready WHERE queue = value AND state = 1);

-- name: expire
-- The three time-driven changes (expire, promote, requeue_expired_leases) go in batches of
-- :batch, earliest first, each batch in its own transaction: the write lock is never held
-- through a whole backlog.
-- A parent with waiting children is left to expiring_parents (its children resolved).
DELETE FROM jobs WHERE seq IN (
    SELECT seq FROM jobs WHERE expires_at <= :now ORDER BY expires_at LIMIT :batch)
  AND NOT has_children;

-- name: promote
UPDATE jobs SET state = 1 WHERE seq IN (
    SELECT seq FROM jobs WHERE state = 0 AND run_at <= :now ORDER BY run_at LIMIT :batch);

-- name: requeue_expired_leases
-- leased_at (and holder) stay: a queued job with a leased_at is one whose lease ran out
-- and that no claim took since, so its delivery still holds it (see ack below).
UPDATE jobs
SET state = 1, lease_until = NULL, additional_deliveries = additional_deliveries + 1
WHERE seq IN (
    SELECT seq FROM jobs WHERE state = 2 AND lease_until <= :now
    ORDER BY lease_until LIMIT :batch);

-- name: requeue_leased_before
UPDATE jobs
SET state = 1, lease_until = NULL, leased_at = NULL, holder = NULL,
    additional_deliveries = additional_deliveries + 1
WHERE state = 2 AND leased_at <= :before;

-- name: release_holder
-- What a lapsed lease does, now, to every job of a dead holder; an at-most-once job is
-- failed instead (never delivered twice), as fail does with no retry_at.
UPDATE jobs INDEXED BY jobs_leases
SET state = CASE WHEN retry_after > 0 THEN 1 ELSE 4 END,
    lease_until = NULL, leased_at = NULL, holder = NULL,
    additional_deliveries = additional_deliveries + (retry_after > 0),
    error_count = error_count + (retry_after <= 0),
    last_error = CASE WHEN retry_after > 0 THEN last_error ELSE :error END,
    finished_at = CASE WHEN retry_after > 0 THEN finished_at ELSE :now END,
    expires_at = CASE WHEN retry_after > 0 THEN expires_at END
WHERE state = 2 AND holder = :holder AND holder_attempts = attempts
RETURNING queue, state, id, has_children;

-- name: claim
UPDATE jobs
SET state = 2, attempts = attempts + 1, leased_at = :now, holder = :holder,
    holder_attempts = attempts + 1,
    lease_until = CASE WHEN retry_after > 0 THEN :now + retry_after END
WHERE seq IN (
    SELECT seq FROM jobs
    WHERE queue = :queue AND state = 1
      AND NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = :queue AND mode & 2)
    ORDER BY priority, run_at, seq
    LIMIT :count)
RETURNING {columns}, {dependency_columns};

-- name: ack
-- A delivery (:attempts, the job's attempts when the caller claimed it) acts on the job
-- only while no newer delivery started; NULL acts by id (Disque's ACKJOB). So do nack,
-- fail and working. A delivery holds its job while it is active (state 2), and still
-- once its lease ran out until a claim takes the job (state 1 with a leased_at, from
-- requeue_expired_leases): that requeue is then taken back, it was no redelivery.
-- A job with waiting children is left alone: ack_parent acks it (see
-- migrate_dependencies), so the usual ack stays one statement (no transaction to open).
UPDATE jobs
SET state = 3, result = :result, result_encoding = :encoding, finished_at = :now,
    additional_deliveries = additional_deliveries - (state = 1 AND leased_at IS NOT NULL),
    lease_until = NULL, leased_at = NULL, holder = NULL, expires_at = :now + result_ttl
WHERE id = :id AND state NOT IN (3, 5) AND (:attempts IS NULL OR attempts = :attempts)
  AND NOT has_children
RETURNING id, expires_at;

-- name: ack_parent
-- As ack, for a job with waiting children, in a transaction that releases them.
UPDATE jobs
SET state = 3, result = :result, result_encoding = :encoding, finished_at = :now,
    additional_deliveries = additional_deliveries - (state = 1 AND leased_at IS NOT NULL),
    lease_until = NULL, leased_at = NULL, holder = NULL, expires_at = :now + result_ttl
WHERE id = :id AND state NOT IN (3, 5) AND (:attempts IS NULL OR attempts = :attempts)
  AND has_children
RETURNING id, expires_at;

-- name: ack_many
-- The jobs of one delivery number (:attempts; NULL: by id). A worker's batch is usually
-- all on one (attempt 1), so this is one statement per batch. Parents with waiting
-- children are left alone, as by ack; so are jobs kept for no time once done, which
-- ack_many_drop deletes (see SqliteStore._run_acks).
UPDATE jobs
SET state = 3, result = NULL, result_encoding = 0, finished_at = :now,
    additional_deliveries = additional_deliveries - (state = 1 AND leased_at IS NOT NULL),
    lease_until = NULL, leased_at = NULL, holder = NULL, expires_at = :now + result_ttl
WHERE id IN (SELECT value FROM json_each(:ids)) AND state NOT IN (3, 5)
  AND (:attempts IS NULL OR attempts = :attempts) AND NOT has_children AND result_ttl > 0
RETURNING id, expires_at;

-- name: ack_many_drop
-- As ack_many, for the jobs whose result is kept for no time (result_ttl 0, as the Disque
-- server's --result-ttl 0 and Disque's ACKJOB): deleted now, as the expiry would delete
-- them at the next claim, instead of an update now and a delete then. Their expiry is
-- returned as infinite: nothing is left to expire.
DELETE FROM jobs
WHERE id IN (SELECT value FROM json_each(:ids)) AND state NOT IN (3, 5)
  AND (:attempts IS NULL OR attempts = :attempts) AND NOT has_children AND result_ttl <= 0
RETURNING id, 9e999;

-- name: nack
-- A lapsed job (see ack) is in its old place already.
UPDATE jobs
SET state = 1, nacks = nacks + 1, additional_deliveries = additional_deliveries - (state = 1),
    lease_until = NULL, leased_at = NULL, holder = NULL
WHERE id = :id AND (state = 2 OR (state = 1 AND leased_at IS NOT NULL))
  AND (:attempts IS NULL OR attempts = :attempts)
RETURNING id, queue;

-- name: fail
-- :alone: as for ack.
UPDATE jobs
SET error_count = error_count + 1, last_error = :error,
    lease_until = NULL, leased_at = NULL, holder = NULL,
    state = CASE WHEN :retry_at IS NULL THEN 4 WHEN :retry_at <= :now THEN 1 ELSE 0 END,
    run_at = coalesce(:retry_at, run_at),
    finished_at = CASE WHEN :retry_at IS NULL THEN :now END,
    expires_at = CASE WHEN :retry_at IS NULL THEN NULL ELSE expires_at END,
    additional_deliveries = additional_deliveries - (state = 1)
WHERE id = :id AND (state = 2 OR (state = 1 AND leased_at IS NOT NULL))
  AND (:attempts IS NULL OR attempts = :attempts) AND NOT (:alone AND has_children)
RETURNING queue, state, has_children;

-- name: working
-- A lapsed job (see ack) is leased again, to its delivery.
UPDATE jobs
SET state = 2, lease_until = :now + retry_after,
    additional_deliveries = additional_deliveries - (state = 1)
WHERE id = :id AND (state = 2 OR (state = 1 AND leased_at IS NOT NULL)) AND retry_after > 0
  AND NOT cancel_requested AND (:attempts IS NULL OR attempts = :attempts)
RETURNING lease_until;

-- name: progress
-- As working, recording the holder's progress (an at-most-once job keeps no lease).
UPDATE jobs
SET progress = :progress, state = 2,
    lease_until = CASE WHEN retry_after > 0 THEN :now + retry_after END,
    additional_deliveries = additional_deliveries - (state = 1)
WHERE id = :id AND (state = 2 OR (state = 1 AND leased_at IS NOT NULL))
  AND NOT cancel_requested AND (:attempts IS NULL OR attempts = :attempts)
RETURNING lease_until;

-- name: cancel_pending
-- A scheduled, queued or waiting job (a lapsed one too: its requeue is taken back) ends
-- cancelled.
UPDATE jobs
SET state = 5, finished_at = :now, expires_at = :now + result_ttl,
    additional_deliveries = additional_deliveries - (state = 1 AND leased_at IS NOT NULL),
    lease_until = NULL, leased_at = NULL, holder = NULL
WHERE id = :id AND state IN (0, 1, 6)
RETURNING has_children;

-- name: request_cancel
UPDATE jobs SET cancel_requested = 1 WHERE id = :id AND state = 2 RETURNING id;

-- name: cancel_held
-- The holder's delivery (see ack) ends its job cancelled.
UPDATE jobs
SET state = 5, finished_at = :now, expires_at = :now + result_ttl,
    additional_deliveries = additional_deliveries - (state = 1),
    lease_until = NULL, leased_at = NULL, holder = NULL
WHERE id = :id AND (state = 2 OR (state = 1 AND leased_at IS NOT NULL))
  AND (:attempts IS NULL OR attempts = :attempts)
RETURNING has_children;

-- name: show
SELECT {columns}, {dependency_columns} FROM jobs WHERE id = ?;

-- name: delete
DELETE FROM jobs WHERE id = ? RETURNING has_children;

-- name: qlen
SELECT count(*) FROM jobs INDEXED BY jobs_ready WHERE queue = ? AND state = 1;

-- name: peek
SELECT {columns}, {dependency_columns} FROM jobs WHERE queue = ? AND state = 1
ORDER BY priority, run_at, seq LIMIT ?;

-- name: failed_in_queue
SELECT {columns}, {dependency_columns} FROM jobs WHERE queue = ? AND state = 4 ORDER BY finished_at, seq LIMIT ?;

-- name: failed_all
SELECT {columns}, {dependency_columns} FROM jobs WHERE state = 4 ORDER BY finished_at, seq LIMIT ?;

-- name: retry
UPDATE jobs SET state = 1, run_at = :now, finished_at = NULL
WHERE id = :id AND state = 4
RETURNING queue;

-- name: pause
INSERT INTO paused_queues (queue, mode) VALUES (?, 2)
ON CONFLICT (queue) DO UPDATE SET mode = mode | 2;

-- name: resume
UPDATE paused_queues SET mode = mode & ~2 WHERE queue = ?;

-- name: drop_unpaused
DELETE FROM paused_queues WHERE mode = 0;

-- name: set_pause
INSERT INTO paused_queues (queue, mode) VALUES (?, ?)
ON CONFLICT (queue) DO UPDATE SET mode = excluded.mode;

-- name: pause_mode
SELECT mode FROM paused_queues WHERE queue = ?;

-- name: paused
SELECT queue FROM paused_queues WHERE mode & 2 ORDER BY queue;

-- name: pause_modes
SELECT queue, mode FROM paused_queues;

-- name: enqueue
UPDATE jobs
SET state = 1, lease_until = NULL, leased_at = NULL, holder = NULL,
    additional_deliveries = additional_deliveries + (attempts > 0)
WHERE id = ? AND state IN (0, 2) AND NOT (attempts > 0 AND retry_after <= 0)
RETURNING id, queue;

-- name: dequeue
UPDATE jobs
SET state = 2, leased_at = :now, holder = NULL,
    lease_until = CASE WHEN retry_after > 0 THEN :now + retry_after END
WHERE id = :id AND state = 1;

-- name: scan
SELECT {columns}, {dependency_columns} FROM jobs
WHERE seq > :after AND (:queue IS NULL OR queue = :queue)
  AND (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
ORDER BY seq LIMIT :count;

-- name: queues
SELECT queue, sum(state = 1) FROM jobs GROUP BY queue;

-- name: flush
DELETE FROM jobs;
DELETE FROM job_dependencies;
DELETE FROM paused_queues;

-- name: register_node
INSERT INTO nodes (id, address, expires_at) VALUES (:id, :address, :expires_at)
ON CONFLICT (id) DO UPDATE SET address = excluded.address, expires_at = excluded.expires_at;

-- name: forget_lapsed_nodes
DELETE FROM nodes WHERE expires_at <= :now;

-- name: unregister_node
DELETE FROM nodes WHERE id = ?;

-- name: nodes
SELECT id, address, expires_at FROM nodes WHERE expires_at > ? ORDER BY id;

-- name: register_schedule
INSERT INTO schedules (name, definition) VALUES (?, ?)
ON CONFLICT (name) DO UPDATE SET definition = excluded.definition;

-- name: schedules
SELECT name, definition, paused FROM schedules ORDER BY name;

-- name: pause_schedule
UPDATE schedules SET paused = ? WHERE name = ?;

-- name: stats
SELECT queue, type, state, count(*),
       max(CASE WHEN state != 3 THEN error_count ELSE 0 END),
       min(CASE WHEN state IN (0, 1, 2) THEN run_at END)
FROM jobs GROUP BY queue, type, state ORDER BY queue, coalesce(type, '');

-- name: register_worker
INSERT INTO workers (id, info, expires_at) VALUES (:id, :info, :expires_at)
ON CONFLICT (id) DO UPDATE SET info = excluded.info, expires_at = excluded.expires_at;

-- name: unregister_worker
DELETE FROM workers WHERE id = :id;

-- name: forget_workers
DELETE FROM workers WHERE expires_at <= :now;

-- name: workers
SELECT info FROM workers WHERE expires_at > :now ORDER BY id;

-- name: record_rollup
INSERT INTO rollups (resolution, start, queue, type, completed, errors, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15)
VALUES (:resolution, :start, :queue, :type, :completed, :errors, :h0, :h1, :h2, :h3, :h4, :h5, :h6, :h7, :h8, :h9, :h10, :h11, :h12, :h13, :h14, :h15)
ON CONFLICT (resolution, start, queue, type) DO UPDATE SET
    completed = completed + excluded.completed,
    errors = errors + excluded.errors,
    h0 = h0 + excluded.h0,
    h1 = h1 + excluded.h1,
    h2 = h2 + excluded.h2,
    h3 = h3 + excluded.h3,
    h4 = h4 + excluded.h4,
    h5 = h5 + excluded.h5,
    h6 = h6 + excluded.h6,
    h7 = h7 + excluded.h7,
    h8 = h8 + excluded.h8,
    h9 = h9 + excluded.h9,
    h10 = h10 + excluded.h10,
    h11 = h11 + excluded.h11,
    h12 = h12 + excluded.h12,
    h13 = h13 + excluded.h13,
    h14 = h14 + excluded.h14,
    h15 = h15 + excluded.h15;

-- name: prune_rollups
DELETE FROM rollups WHERE resolution = :resolution AND start < :before;

-- name: rollups
SELECT resolution, start, queue, type, completed, errors, h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15 FROM rollups
WHERE resolution = :resolution AND start >= :since
  AND (:queue IS NULL OR queue = :queue) AND (:type IS NULL OR type = :type)
ORDER BY start, queue, type;
-- name: migrate_limits
-- Flow limits (issue 16): each limited queue's concurrency and rate (rate_count claims
-- per rate_per seconds), and its rate's token bucket (its level, tokens, at filled_at).
-- Every claim reads its queue's row in its LIMIT (claim_limited: one statement, so
-- atomic), and the trigger spends a token per job claimed from a rated queue, in the same
-- statement. A queue without limits pays two lookups in this small table per claim.
-- The arithmetic is disquette.stores.limits' refill and allowance, in SQL.
CREATE TABLE IF NOT EXISTS queue_limits (
    queue TEXT PRIMARY KEY,
    concurrency INTEGER,
    rate_count INTEGER,
    rate_per REAL,
    tokens REAL,
    filled_at REAL
) WITHOUT ROWID;
-- Only claims set attempts; the WHEN probe keeps the trigger's program from running for a
-- queue without a rate.
CREATE TRIGGER IF NOT EXISTS queue_limits_spend AFTER UPDATE OF attempts ON jobs
WHEN new.state = 2 AND old.state = 1
     AND EXISTS (SELECT 1 FROM queue_limits AS l WHERE l.queue = new.queue
                 AND l.rate_count IS NOT NULL)
BEGIN
    UPDATE queue_limits
    SET tokens = min(rate_count,
                     tokens + max(0, new.leased_at - filled_at) * rate_count / rate_per) - 1,
        filled_at = max(filled_at, new.leased_at)
    WHERE queue = new.queue AND rate_count IS NOT NULL; END;  -- one line: see _script

-- name: claim_limited
-- As claim, taking no more than the queue's limits allow (none: as many as asked): its
-- unexpired leases counted (walking the index of active jobs, every queue's), and the
-- tokens its bucket holds now (at least one, else none; a hair of slack for float steps).
UPDATE jobs
SET state = 2, attempts = attempts + 1, leased_at = :now, holder = :holder,
    holder_attempts = attempts + 1,
    lease_until = CASE WHEN retry_after > 0 THEN :now + retry_after END
WHERE seq IN (
    SELECT seq FROM jobs
    WHERE queue = :queue AND state = 1
      AND NOT EXISTS (SELECT 1 FROM paused_queues WHERE queue = :queue AND mode & 2)
    ORDER BY priority, run_at, seq
    LIMIT coalesce((
        SELECT max(0, min(:count,
            CASE WHEN concurrency IS NULL THEN :count
                 ELSE concurrency - (SELECT count(*) FROM jobs INDEXED BY jobs_leases
                                     WHERE state = 2 AND queue = :queue
                                       AND (lease_until IS NULL OR lease_until > :now)) END,
            CASE WHEN rate_count IS NULL THEN :count
                 ELSE CAST(min(rate_count, tokens + max(0, :now - filled_at)
                               * rate_count / rate_per) + 1e-9 AS INTEGER) END))
        FROM queue_limits WHERE queue = :queue), :count))
RETURNING {columns}, {dependency_columns};

-- name: claim_deliveries_columns
-- What claim_deliveries reads of each job the claim statements lease (see claims.py): the
-- Delivery (GETJOB's reply) but its queue (the claim's), and the lease's end (the store's
-- next due change). Each column read costs: a whole row is 30.
id, body, nacks, additional_deliveries, lease_until;

-- name: limited_queue_among
SELECT 1 FROM queue_limits WHERE queue IN (SELECT value FROM json_each(?1)) LIMIT 1;

-- name: all_limits
SELECT queue, concurrency, rate_count, rate_per FROM queue_limits ORDER BY queue;

-- name: set_limits
INSERT INTO queue_limits (queue, concurrency, rate_count, rate_per, tokens, filled_at)
VALUES (?1, ?2, ?3, ?4, ?3, ?5)
ON CONFLICT (queue) DO UPDATE SET concurrency = ?2, rate_count = ?3, rate_per = ?4,
    tokens = ?3, filled_at = ?5;

-- name: clear_limits
DELETE FROM queue_limits WHERE queue = ?1;

-- name: migrate_dependencies
-- Version 7: job dependencies (issue 16). A job added with parents keeps them (depends_on,
-- JSON text; NULL for none) and its policy (on_dependency_failure: 0 fail, 1 run); while
-- one is pending it waits in state 6 and pending_parents counts those not yet ended.
-- Each (parent, child) pair it waits on is a row of job_dependencies (with the parent's
-- TTL: a pending job's expires_at never changes), and has_children flags the parent: the
-- statements that end a job (ack, fail, cancel, delete) leave out or return the flag, so
-- a job without children pays nothing more, and one with children has them resolved in
-- the same transaction (dependencies.py); the expiry finds the parents whose TTL ran out
-- in job_dependencies' index (no index on jobs for an ack to keep up). Adding columns rewrites
-- nothing; a process of the previous version names its columns and goes on working
-- (it never claims a waiting job: not state 1), but it neither adds jobs with parents
-- nor releases children: stop every process before the upgrade, as for every one.
ALTER TABLE jobs ADD COLUMN depends_on TEXT;
ALTER TABLE jobs ADD COLUMN on_dependency_failure INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN pending_parents INTEGER;
ALTER TABLE jobs ADD COLUMN has_children INTEGER NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS job_dependencies (
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    parent_expires_at REAL,
    PRIMARY KEY (parent, child)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_dependencies_expiry ON job_dependencies(parent_expires_at)
WHERE parent_expires_at IS NOT NULL;

-- name: insert_dependant
-- A job of a batch with parents (dependencies.admit planned its state, and its end when
-- a parent had ended without being done); the store looked for held ids and keys first.
INSERT INTO jobs (id, queue, state, priority, run_at, created_at, body, encoding, type,
                  retry_after, expires_at, max_attempts, result_ttl, headers, unique_key,
                  unique_states, depends_on, on_dependency_failure, pending_parents,
                  last_error, finished_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18,
        ?19, ?20, ?21);

-- name: states_of
-- The state and TTL of each of these jobs (a JSON array of ids) the file holds.
SELECT id, state, expires_at FROM jobs WHERE id IN (SELECT value FROM json_each(?));

-- name: add_dependency
INSERT INTO job_dependencies (parent, child, parent_expires_at) VALUES (?, ?, ?)
ON CONFLICT DO NOTHING;

-- name: mark_parent
UPDATE jobs SET has_children = 1 WHERE id = ? AND NOT has_children;

-- name: release_children
-- A parent ended: done (:done), or otherwise, which counts as finished for the children
-- whose policy is run. Each such child counts one pending parent fewer; one with none
-- left becomes ready, queued (or scheduled until its run_at), its run_at raised to now:
-- behind the jobs queued meanwhile.
UPDATE jobs
SET pending_parents = pending_parents - 1,
    state = CASE WHEN pending_parents > 1 THEN 6 WHEN run_at > :now THEN 0 ELSE 1 END,
    run_at = CASE WHEN pending_parents > 1 THEN run_at ELSE max(run_at, :now) END
WHERE id IN (SELECT child FROM job_dependencies WHERE parent = :parent)
  AND state = 6 AND (:done OR on_dependency_failure = 1)
RETURNING queue, state, run_at;

-- name: end_children
-- A parent ended without being done: its waiting children of policy fail end too, in
-- :state (4 failed, kept; 5 cancelled, kept for their result_ttl).
UPDATE jobs
SET state = :state, last_error = :error, finished_at = :now,
    expires_at = CASE WHEN :state = 5 THEN :now + result_ttl END
WHERE id IN (SELECT child FROM job_dependencies WHERE parent = :parent)
  AND state = 6 AND on_dependency_failure = 0
RETURNING id, has_children, expires_at;

-- name: forget_children
DELETE FROM job_dependencies WHERE parent = ?;

-- name: unmark_parent
UPDATE jobs SET has_children = 0 WHERE id = ? AND has_children;

-- name: expiring_parents
-- The parents whose TTL ran out (the expiry deletes them, their children resolved).
SELECT id FROM jobs
WHERE id IN (SELECT parent FROM job_dependencies INDEXED BY job_dependencies_expiry
             WHERE parent_expires_at <= :now ORDER BY parent_expires_at LIMIT :batch)
  AND expires_at <= :now;

-- name: migrate_limits_spend
-- Version 8: the token trigger watches holder_attempts, not attempts. Every claim sets it
-- (and so fires the trigger, once per job) but the anonymous claim of several jobs (the
-- Disque server's GETJOB), which leaves it alone (no holder to release its jobs) and
-- spends its tokens in its own transaction, in one statement (spend_tokens): the trigger's
-- program costs about 3.9k instructions per job even where its WHEN is false. A process
-- of the previous version sets holder_attempts in every claim: its claims still spend.
DROP TRIGGER IF EXISTS queue_limits_spend;
CREATE TRIGGER IF NOT EXISTS queue_limits_spend AFTER UPDATE OF holder_attempts ON jobs
WHEN new.state = 2 AND old.state = 1
     AND EXISTS (SELECT 1 FROM queue_limits AS l WHERE l.queue = new.queue
                 AND l.rate_count IS NOT NULL)
BEGIN
    UPDATE queue_limits
    SET tokens = min(rate_count,
                     tokens + max(0, new.leased_at - filled_at) * rate_count / rate_per) - 1,
        filled_at = max(filled_at, new.leased_at)
    WHERE queue = new.queue AND rate_count IS NOT NULL; END;  -- one line: see _script

-- name: spend_tokens
-- What queue_limits_spend does for each job a claim takes, for the :claimed jobs an
-- anonymous claim of several (which does not fire it) took from :queue at :now, in the
-- claim's transaction: the refill, then a token per job.
UPDATE queue_limits
SET tokens = min(rate_count, tokens + max(0, :now - filled_at) * rate_count / rate_per)
             - :claimed,
    filled_at = max(filled_at, :now)
WHERE queue = :queue AND rate_count IS NOT NULL;

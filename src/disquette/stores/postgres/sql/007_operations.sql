-- Migration 7 of the PostgreSQL store: what dashboards read (issue 14).
--
-- The worker registry: each worker process upserts its row every few seconds (a
-- heartbeat); a row whose expires_at passed is deleted by the next read of the registry.
CREATE TABLE {schema}.workers (
    id text COLLATE "C" PRIMARY KEY,
    info text NOT NULL,               -- WorkerInfo as JSON text
    expires_at float8 NOT NULL
);

-- Rollups: one row per resolution ('minute', 'hour'), period start, queue and type ('' for
-- none), summed into by every worker's flush (ON CONFLICT adds); h0..h15 count runs per
-- duration bucket (disquette.stores.types.DURATION_BUCKETS). Each flush prunes what its
-- resolution no longer keeps (8 hours of minutes, 3 days of hours): a few thousand rows.
CREATE TABLE {schema}.rollups (
    resolution text COLLATE "C" NOT NULL,
    start float8 NOT NULL,
    queue text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL,
    completed int8 NOT NULL DEFAULT 0,
    errors int8 NOT NULL DEFAULT 0,
    h0 int8 NOT NULL DEFAULT 0,
    h1 int8 NOT NULL DEFAULT 0,
    h2 int8 NOT NULL DEFAULT 0,
    h3 int8 NOT NULL DEFAULT 0,
    h4 int8 NOT NULL DEFAULT 0,
    h5 int8 NOT NULL DEFAULT 0,
    h6 int8 NOT NULL DEFAULT 0,
    h7 int8 NOT NULL DEFAULT 0,
    h8 int8 NOT NULL DEFAULT 0,
    h9 int8 NOT NULL DEFAULT 0,
    h10 int8 NOT NULL DEFAULT 0,
    h11 int8 NOT NULL DEFAULT 0,
    h12 int8 NOT NULL DEFAULT 0,
    h13 int8 NOT NULL DEFAULT 0,
    h14 int8 NOT NULL DEFAULT 0,
    h15 int8 NOT NULL DEFAULT 0,
    PRIMARY KEY (resolution, start, queue, type)
);

-- Jobs pages walk jobs newest first by keyset on seq (WHERE seq < cursor ORDER BY seq DESC
-- LIMIT n): over the jobs and done tables, a Merge Append of two backward index scans,
-- stopping once the page is full, and with a queue, of (queue, seq). seq and queue never
-- change after the insert, so a claim or an ack adds entries to these indexes only
-- because its update is not HOT anyway (it changes indexed columns already).
CREATE INDEX jobs_seq ON {schema}.jobs (seq);
CREATE INDEX jobs_queue_seq ON {schema}.jobs (queue, seq);
CREATE INDEX done_seq ON {schema}.done (seq);
CREATE INDEX done_queue_seq ON {schema}.done (queue, seq);

-- A JSON body's scalar at a path of object keys, as text (a string as itself, a number or
-- boolean as its JSON text), NULL when the path holds nothing, null, an object or an
-- array, or when the body is no JSON at all. A function, so that a malformed body (bytes
-- claiming to be JSON) makes no error in the middle of a scan.
CREATE FUNCTION {schema}.body_scalar(p_body bytea, p_path text[]) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    v jsonb;
BEGIN
    v := convert_from(p_body, 'UTF8')::jsonb #> p_path;
    IF jsonb_typeof(v) IN ('string', 'number', 'boolean') THEN
        RETURN v #>> '{}';
    END IF;
    RETURN NULL;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

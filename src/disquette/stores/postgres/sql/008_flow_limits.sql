-- Migration 8 of the PostgreSQL store: flow limits (issue 16). Each limited queue's
-- concurrency and rate (rate_count claims per rate_per seconds), and its rate's token
-- bucket (its level, tokens, at filled_at).
CREATE TABLE {schema}.queue_limits (
    queue text COLLATE "C" PRIMARY KEY,
    concurrency integer,
    rate_count integer,
    rate_per float8,
    tokens float8,
    filled_at float8
);

-- The claim, obeying limits. A claim whose queues have no limits is claim_ready's, for
-- one more index probe of this (small) table. Otherwise each queue in turn: a limited
-- queue's row is locked (FOR UPDATE: its claims take turns, each counting the leases the
-- one before it committed), its unexpired leases counted, its bucket refilled, and
-- claim_ready takes no more than the limits allow; the tokens taken are spent before the
-- row's lock is released at commit. The arithmetic is disquette.stores.limits'.
CREATE FUNCTION {schema}.claim_limited(p_queues text[], p_count integer, p_now float8,
                                       p_holder text, p_channel text)
RETURNS TABLE (
    id text, queue text, body bytea, encoding smallint, type text, priority integer,
    state smallint, created_at float8, run_at float8, retry_after float8,
    expires_at float8, max_attempts integer, result_ttl float8, attempts integer,
    nacks integer, additional_deliveries integer, error_count integer, last_error text,
    lease_until float8, result bytea, result_encoding smallint, finished_at float8,
    seq bigint, cancel_requested boolean, progress text, headers json)
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
        RETURN QUERY SELECT * FROM {schema}.claim_ready(p_queues, p_count, p_now, p_holder,
                                                        p_channel);
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
            RETURN QUERY SELECT * FROM {schema}.claim_ready(ARRAY[q], allowed, p_now, p_holder,
                                                            p_channel);
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

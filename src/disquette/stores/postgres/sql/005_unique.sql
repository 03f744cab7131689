-- Migration 5 of the PostgreSQL store: unique jobs.
--
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

-- add1: one plain job, inserted as add.lua inserts it, with keys.lua alone before it: the
-- prelude of the other scripts (common.lua, deps.lua) costs more Redis time than such an
-- insert (see AsyncRedisStore.add, which sends only these here). Plain: default options
-- but for a type; no max_len, no hold (replicate), no parents; one server, not a Cluster
-- (which also publishes wake-ups and maps ids: add.lua does that). ARGV[4] the queue,
-- ARGV[5] the id, ARGV[6] m, ARGV[7] run_at, ARGV[8] the type ("" for none). Returns what
-- add.lua returns: {{}, {"ok", added}} (0 for an id already stored: a replay) or
-- {{}, {"paused", queue}} (the queue is paused for input).
local name = ARGV[4]
local q = {base = queue_base(name)}
local bits = tonumber(redis.call('GET', q.base .. 'p') or 0)  -- see pause.lua
if bits % 2 == 1 then return {{}, {'paused', name}} end
local id = ARGV[5]
local key = job_key(q, id)
if redis.call('EXISTS', key) == 1 then return {{}, {'ok', 0}} end
local seq = redis.call('INCRBY', PREFIX .. 'seq', 1)
local run_at = ARGV[7]
local ready = tonumber(run_at) <= NOW
local state = ready and 'q' or 's'
if ARGV[8] == '' then
    redis.call('HSET', key, 'q', name, 'm', ARGV[6], 'r', run_at, 'sq', seq, 'st', state)
else
    redis.call('HSET', key, 'q', name, 'm', ARGV[6], 'r', run_at, 'sq', seq, 'st', state,
               't', ARGV[8])
end
if not ready then
    redis.call('ZADD', q.base .. 's', run_at, id)
    return {{}, {'ok', 1}}
end
redis.call('ZADD', q.base .. 'r', DEFAULTS.p, order(run_at, seq) .. id)
-- The marker, as mark() in common.lua leaves it after an add that filled the ready set:
-- set unless the queue is paused for output.
if bits < 2 then
    redis.call('ZADD', q.base .. 'w', 0, '0')
else
    redis.call('DEL', q.base .. 'w')
end
return {{}, {'ok', 1}}

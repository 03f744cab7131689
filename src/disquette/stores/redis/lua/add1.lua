-- add1: one plain job, inserted as add.lua inserts it, with keys.lua alone before it: the
-- prelude of the other scripts (common.lua, deps.lua) costs more Redis time than such an
-- insert (see AsyncRedisStore.add, which sends only these here). Plain: default options
-- but for a type; no max_len, no hold (replicate), no parents; one server, not a Cluster
-- (which also publishes wake-ups and maps ids: add.lua does that). KEYS[1] the queue's
-- ready set ("<base>r", its other keys are beside it), ARGV[4] the queue, ARGV[5] the id,
-- ARGV[6] m, ARGV[7] the type ("" or left out for none), ARGV[8] run_at, left out for a
-- job due now: then NOW (ARGV[3]) is its run_at, the text and the number read once (the
-- client sends a due job's run_at as NOW, see AsyncRedisStore.add). Returns 1 (added), 0
-- (an id already stored: a replay) or -1 (the queue is paused for input): an integer,
-- which costs Redis and the client less than add.lua's tables.
--
-- Every redis.call costs Redis more than the command's own work (about 5,000
-- instructions, measured with callgrind on Redis 7.0), so the usual add makes four:
-- EXISTS reads the job's hash, the pause bits and the marker at once (EXISTS counts a key
-- named twice twice: the job weighs 4, the bits 2, the marker 1), and the marker is only
-- written when it changes. A number given to redis.call is spelled by snprintf (about
-- 2,000 instructions) and a text read by tonumber parsed by strtod (as much for a time):
-- constants go as text, and each time is read once.
local ready_key = KEYS[1]
local base = string.sub(ready_key, 1, -2)
local id = ARGV[5]
local key = job_key({base = base}, id)
local pause_key = base .. 'p'
local marker = base .. 'w'
local found = redis.call('EXISTS', key, key, key, key, pause_key, pause_key, marker)
local bits = 0
if found % 4 >= 2 then
    bits = tonumber(redis.call('GET', pause_key) or 0)  -- see pause.lua
    if bits % 2 == 1 then return -1 end
end
if found >= 4 then return 0 end
local seq = redis.call('INCRBY', PREFIX .. 'seq', '1')
local run_at, at = ARGV[8], NOW
if run_at then at = tonumber(run_at) else run_at = NOW_S end
local ready = at <= NOW
local state = ready and 'q' or 's'
local type_ = ARGV[7]
if type_ == nil or type_ == '' then
    redis.call('HSET', key, 'q', ARGV[4], 'm', ARGV[6], 'r', run_at, 'sq', seq, 'st', state)
else
    redis.call('HSET', key, 'q', ARGV[4], 'm', ARGV[6], 'r', run_at, 'sq', seq, 'st', state,
               't', type_)
end
if not ready then
    redis.call('ZADD', base .. 's', run_at, id)
    return 1
end
redis.call('ZADD', ready_key, DEFAULTS.p, order(at, seq) .. id)
-- The marker, as mark() in common.lua leaves it after an add that filled the ready set:
-- set unless the queue is paused for output.
if bits < 2 then
    if found % 2 == 0 then redis.call('ZADD', marker, '0', '0') end
elseif found % 2 == 1 then
    redis.call('DEL', marker)
end
return 1

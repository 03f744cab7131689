-- The start of every script of the Redis store (disquette/stores/redis/scripts.py prepends
-- it, then common.lua and deps.lua to all but add1.lua): the calling convention and how
-- keys and ready-set members are spelled. Kept small: add1.lua runs with this alone.
--
-- Calling convention: ARGV[1] is the key prefix ("disquette:"), ARGV[2] is "1" when job
-- hashes live in their queue's hash slot (Redis Cluster) and "" when they live under
-- "<prefix>j:<id>" (one server), ARGV[3] is the store clock's now. Script arguments start
-- at ARGV[4]. Time always comes from the caller's clock, never from Redis TIME.

local PREFIX = ARGV[1]
local IN_QUEUE_SLOT = ARGV[2] == '1'
local NOW_S = ARGV[3]
local NOW = tonumber(NOW_S)

-- Values a job hash leaves out: the job defaults, filled in from defaults.py at load time.
local DEFAULTS = {p = '@PRIORITY@', ra = '@RETRY_AFTER@', rt = '@RESULT_TTL@'}

local function fmt(x)
    return string.format('%.17g', x)
end

-- The common start of queue name's keys, "<prefix>{<name>}:" ("%" and "}" escaped, as
-- codec.queue_base does): the tag keeps them in one Cluster slot. See common.lua.
local function queue_base(name)
    local escaped = string.gsub(name, '%%', '%%25')
    escaped = string.gsub(escaped, '}', '%%7D')
    return PREFIX .. '{' .. escaped .. '}:'
end

-- Where the hash of job id of queue q (a table with its base) lives.
local function job_key(q, id)
    if IN_QUEUE_SLOT then return q.base .. 'j:' .. id end
    return PREFIX .. 'j:' .. id
end

-- Order inside a priority: run_at, then enqueue sequence, as big-endian bytes that sort
-- like the numbers (IEEE doubles with the sign bit flipped, negatives inverted). The sign
-- bit of x >= 0 flipped is the double -x, so that case is one pack (adds cost less Redis
-- time); "+ 0" makes -0 plain 0.
local function order(run_at, seq)
    local x = tonumber(run_at) + 0
    if x >= 0 then return struct.pack('>dI6', -x, tonumber(seq)) end
    local bits = string.gsub(struct.pack('>d', x), '.', function(c)
        return string.char(255 - string.byte(c))
    end)
    return bits .. struct.pack('>I6', tonumber(seq))
end
local ORDER_BYTES = 14

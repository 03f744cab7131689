-- Shared by every script of the Redis store but add1.lua (disquette/stores/redis/scripts.py
-- puts it after keys.lua, which holds the calling convention, and fills each placeholder,
-- a name of disquette/defaults.py between two at signs).
--
-- Keys of queue Q (all in one hash slot through the "{Q}" tag; "%" and "}" escaped):
--   <prefix>{Q}:r   ready jobs    zset  score priority, member order(run_at, seq) .. id
--   <prefix>{Q}:s   scheduled     zset  score run_at, member id
--   <prefix>{Q}:a   active        zset  score lease_until (+inf when retry_after is 0),
--                                       member id
--   <prefix>{Q}:e   expiries      zset  score expires_at, member id (TTL, done retention)
--   <prefix>{Q}:f   failed        zset  score finished_at, member seq .. id
--   <prefix>{Q}:p   pause mode    string: bits, 1 refuses adds ("in"), 2 stops delivery
--                                       ("out"); absent when 0
--   <prefix>{Q}:w   wake marker   zset  one member "0" while the queue may hold ready jobs
--                                       for a blocked get to claim (a hint, never the truth:
--                                       a blocked get pops it with BZPOPMIN, see finish)
--   <prefix>{Q}:b   waiting jobs  zset  score enqueue sequence, member id (jobs added with
--                                       parents not yet done: see deps.lua)
-- A job is a hash. Field "m" holds what never changes, packed by the Python side (created
-- at, options, body: the scripts never read it); the others are what the scripts need:
--   q queue, st state (s, q, a, d done, f failed, c cancelled, w waiting), r run_at, sq
--   enqueue sequence, t type, p priority, ra retry_after, rt result_ttl (the last three
--   only when not DEFAULTS), n attempts, k nacks, ad additional deliveries, ec error
--   count, le last error, la leased_at, lu lease_until, h holder (the process a claim
--   leased the job to, if it said, then "#" and the attempts of that delivery: a process
--   of the previous version claims without clearing h, and attempts tell its delivery
--   apart; see release_holder.lua; la, lu and h mean something only while active),
--   w set when a wait() registered interest (its end is published, see finish),
--   fa finished_at, res result, re result encoding, nx "no expiry" (set when the job
--   failed for good: its TTL no longer applies), lp "lapsed" (set while the job is ready
--   because its lease ran out and no claim took it since: its delivery still holds it,
--   see held; cleared whenever the job leaves the ready set), cr "cancel requested" (set
--   on an active job someone asked to cancel: working and progress refuse it; its holder
--   ends it in state c, cancelled, kept like a done job for rt), pg the progress its
--   holder last reported (JSON text), hd headers (JSON text, set by add only for a job
--   that has some); a job added with parents (issue 16, see deps.lua) keeps do (its
--   policy letter, f or r, then its parents' 40-byte ids), and dc (how many of them are
--   still pending) while waiting; a parent with waiting children has ch set and their
--   job keys in the list "<its job key>:c".
-- Unique jobs: "<prefix>{Q}:u:<key>" (a string) names the last job that took the key; a
-- job given one keeps it in field uk, and in us the bits of the states it holds it in
-- (s 1, q 2, a 4, d 8, f 16, c 32, w 64; see key_holder).
-- Wake-ups: a queue that gained ready jobs gets its marker (one BZPOPMIN wakes one
-- blocked get; the claim re-arms the marker while ready jobs remain). On a Cluster,
-- "<prefix>w:<Q>" is also published when a queue's ready set goes from empty to not empty
-- (a get over several queues cannot block on keys of several slots). "<prefix>d:<id>" is
-- published when a job someone waits on (field w) becomes done, failed, cancelled or
-- deleted (a waiting child's end included), "<prefix>done" after a flush, and
-- "<prefix>cancel" when an active job gets a cancel request.

-- The row every reading script returns after the id (claim.lua returns its own, shorter).
local FIELDS = {'q', 'm', 't', 'st', 'r', 'n', 'k', 'ad', 'ec', 'le', 'lu', 'res', 're', 'fa',
                'sq', 'nx', 'cr', 'pg', 'hd', 'do'}

local queues = {}        -- name -> key table, for each queue this call touched
local touched = {}       -- the same tables, in first-touch order
local removed = {}       -- ids of deleted jobs (on a Cluster their id lookups go too)
local done_changed = false  -- a flush: every wait() looks again
local waited = {}        -- ids of ended jobs a wait() registered for (field w)
-- Most jobs the ticks of one call move, all queues and sets together (each set of each
-- queue still moves one, so that every queue makes progress): a burst of due jobs is
-- promoted over several calls (the marker brings a blocked get back at once), never in
-- one long call, even a claim over many queues.
local TICK_LIMIT = 1000
local tick_budget = TICK_LIMIT  -- what this call's ticks may still move

local function queue(name)
    local q = queues[name]
    if q then return q end
    local base = queue_base(name)
    q = {name = name, base = base, r = base .. 'r', s = base .. 's', a = base .. 'a',
         e = base .. 'e', f = base .. 'f', p = base .. 'p', w = base .. 'w',
         b = base .. 'b',  -- waiting jobs (dependencies): see deps.lua
         lim = base .. 'lim'}  -- flow limits (issue 16), a hash: see claim.lua
    if IN_QUEUE_SLOT then q.was_empty = redis.call('ZCARD', q.r) == 0 end
    queues[name] = q
    touched[#touched + 1] = q
    return q
end

-- A queue's pause bits, read once per call (pause.lua and flush.lua keep q.bits current).
local function pause_bits(q)
    if not q.bits then q.bits = tonumber(redis.call('GET', q.p) or 0) end
    return q.bits
end

-- Every set that holds jobs of q, with the bytes before the id in its members: ready,
-- scheduled, active, failed, expiries (TTL, done and cancelled jobs), waiting.
local function job_sets(q)
    return {{q.r, ORDER_BYTES}, {q.s, 0}, {q.a, 0}, {q.f, 6}, {q.e, 0}, {q.b, 0}}
end

local function failed_member(seq, id)
    return struct.pack('>I6', tonumber(seq)) .. id
end

local function make_ready(q, key, id, priority, run_at, seq)
    q.readied = true
    redis.call('HSET', key, 'st', 'q')
    redis.call('ZADD', q.r, priority or DEFAULTS.p, order(run_at, seq) .. id)
end

-- Take a job out of the set its state keeps it in.
local function leave(q, key, id, state)
    if state == 'q' then
        local v = redis.call('HMGET', key, 'r', 'sq')
        redis.call('ZREM', q.r, order(v[1], v[2]) .. id)
    elseif state == 's' then
        redis.call('ZREM', q.s, id)
    elseif state == 'a' then
        redis.call('ZREM', q.a, id)
        -- A slot of a limited queue freed: its marker brings back a consumer held back.
        if redis.call('EXISTS', q.lim) == 1 then q.readied = true end
    elseif state == 'f' then
        redis.call('ZREM', q.f, failed_member(redis.call('HGET', key, 'sq'), id))
    elseif state == 'w' then
        redis.call('ZREM', q.b, id)
        redis.call('HDEL', key, 'dc')
    end
end

-- The id at the end of a job key.
local function key_id(q, key)
    if IN_QUEUE_SLOT then return string.sub(key, #q.base + 3) end
    return string.sub(key, #PREFIX + 3)
end

-- Unique keys. A job holds its key while it lives, unexpired, in a state whose bit is set in
-- its us field: so whatever a transition forgets, an add never sees a stale holder. The
-- transitions that end a hold still delete the key (free_key), to bound the memory.
local STATE_BITS = {s = 1, q = 2, a = 4, d = 8, f = 16, c = 32, w = 64}

local function has_bit(mask, state)
    return math.floor(tonumber(mask or 0) / STATE_BITS[state]) % 2 == 1
end

local function unique_lock(q, ukey)
    return q.base .. 'u:' .. ukey
end

-- The id of the job holding a unique key of queue q now, or nil.
local function key_holder(q, ukey)
    local holder = redis.call('GET', unique_lock(q, ukey))
    if not holder then return nil end
    local v = redis.call('HMGET', job_key(q, holder), 'st', 'us', 'uk')
    if not v[1] or v[3] ~= ukey or not has_bit(v[2], v[1]) then return nil end
    local expires_at = redis.call('ZSCORE', q.e, holder)
    if expires_at and tonumber(expires_at) <= NOW then return nil end
    return holder
end

-- A job whose key is ukey (nil: none) with states mask goes to state (nil: it is gone):
-- its key is deleted unless it still holds it there.
local function free_key(q, id, ukey, mask, state)
    if not ukey or (state and has_bit(mask, state)) then return end
    local lock = unique_lock(q, ukey)
    if redis.call('GET', lock) == id then redis.call('DEL', lock) end
end

-- A job ended (done, failed, cancelled, deleted): tell its waiters, if it has any.
local function ended(key, id)
    if redis.call('HEXISTS', key, 'w') == 1 then waited[#waited + 1] = id end
end

-- Delete a job that already left its state's set.
local function drop(q, key, id)
    ended(key, id)
    local u = redis.call('HMGET', key, 'uk', 'us')
    free_key(q, id, u[1], u[2], nil)
    redis.call('ZREM', q.e, id)
    redis.call('DEL', key)
    removed[#removed + 1] = id
end

-- resolve(key, id, end): a job that had waiting children (field ch) ended: "done",
-- "failed", "cancelled", "deleted" or "expired" (defined in deps.lua).
local resolve

-- Delete a job, for the reason why ("deleted" or "expired", given to its children).
local function remove(q, key, id, why)
    local v = redis.call('HMGET', key, 'st', 'ch')
    if not v[1] then return false end
    leave(q, key, id, v[1])
    if v[2] then resolve(key, id, why) end
    drop(q, key, id)
    return true
end

-- Whether the caller's delivery (an attempts count as a string, "" for "by id") is the
-- job's current one, given the job's attempts field.
local function same_delivery(delivery, attempts)
    return delivery == '' or tonumber(delivery) == tonumber(attempts or 0)
end

-- Whether the caller's delivery holds a job in state ``state`` whose lp field is
-- ``lapsed``: it is active (its lease run out or not), or ready again because its lease
-- ran out, and no claim took it since.
local function held(state, lapsed)
    return state == 'a' or (state == 'q' and not not lapsed)
end

-- The delivery of a lapsed job (see held) acts on it before any claim took it: the requeue
-- was no redelivery after all. The caller moves the job out of the ready set, if need be.
local function take_back_lapse(key)
    redis.call('HINCRBY', key, 'ad', -1)
    redis.call('HDEL', key, 'lp')
end

-- Record an error on an active job (ARGV-independent, for fail.lua and
-- release_holder.lua): ready again at retry_at, or failed for good when it is "".
local function record_error(q, key, id, error, retry_at, priority, seq)
    leave(q, key, id, 'a')
    redis.call('HINCRBY', key, 'ec', 1)
    redis.call('HSET', key, 'le', error)
    if retry_at == '' then
        local u = redis.call('HMGET', key, 'uk', 'us')
        free_key(q, id, u[1], u[2], 'f')
        redis.call('HSET', key, 'st', 'f', 'fa', NOW_S, 'nx', '1')
        redis.call('HDEL', key, 'h')  -- kept until deleted: no dead weight
        redis.call('ZREM', q.e, id)
        redis.call('ZADD', q.f, NOW_S, failed_member(seq, id))
        ended(key, id)
        if redis.call('HEXISTS', key, 'ch') == 1 then resolve(key, id, 'failed') end
    elseif tonumber(retry_at) <= NOW then
        redis.call('HSET', key, 'r', retry_at)
        make_ready(q, key, id, priority, retry_at, seq)
    else
        redis.call('HSET', key, 'r', retry_at, 'st', 's')
        redis.call('ZADD', q.s, retry_at, id)
    end
end

-- A leased job whose worker is presumed gone goes back to the ready set.
local function requeue_stale(q, key, id)
    leave(q, key, id, 'a')
    redis.call('HINCRBY', key, 'ad', 1)
    local v = redis.call('HMGET', key, 'p', 'r', 'sq')
    make_ready(q, key, id, v[1], v[2], v[3])
end

-- How many jobs a tick may take from its next set, once it moved ``moved`` from the last.
local function tick_room(moved)
    tick_budget = tick_budget - moved
    return math.max(tick_budget, 1)
end

-- Up to room members of set whose score is at or before now. The numbers go as text
-- spelled by '%d': Redis spells a number given to redis.call by '%.17g', about 2,000
-- instructions each (callgrind), a few hundred for '%d'.
local function due_in(set, room)
    return redis.call('ZRANGEBYSCORE', set, '-inf', NOW_S, 'LIMIT', '0', string.format('%d', room))
end

-- What time made due, in the order of the other stores: expire, promote, requeue lapsed
-- leases. Once per queue and call, within the call's TICK_LIMIT (a longer backlog leaves
-- the marker set, so a blocked get calls again at once). Returns how many leases were
-- requeued, and whether any job changed.
local function tick(q)
    if q.ticked then return 0, false end
    q.ticked = true
    local room = tick_room(0)
    local expired = due_in(q.e, room)
    for _, id in ipairs(expired) do
        remove(q, job_key(q, id), id, 'expired')
    end
    local more = #expired == room
    room = tick_room(#expired)
    local due = due_in(q.s, room)
    for _, id in ipairs(due) do
        local key = job_key(q, id)
        local v = redis.call('HMGET', key, 'p', 'r', 'sq')
        redis.call('ZREM', q.s, id)
        make_ready(q, key, id, v[1], v[2], v[3])
    end
    more = more or #due == room
    room = tick_room(#due)
    local stale = due_in(q.a, room)
    for _, id in ipairs(stale) do
        local key = job_key(q, id)
        requeue_stale(q, key, id)
        redis.call('HSET', key, 'lp', '1')  -- still its delivery's until a claim takes it
    end
    more = more or #stale == room
    tick_room(#stale)
    if more then
        q.readied = true  -- more may be due: the marker brings a caller back for the rest
        q.backlog = true
    end
    return #stale, #expired + #due + #stale > 0
end

-- An existing job's queue (ticked) and the values of its fields ..., or nil.
local function locate(key, ...)
    local v = redis.call('HMGET', key, 'q', ...)
    if not v[1] then return nil end
    local q = queue(v[1])
    local _, changed = tick(q)
    if changed then
        v = redis.call('HMGET', key, 'q', ...)
        if not v[1] then return nil end
    end
    return q, v
end

-- Append a job's id and FIELDS to out (all false when the job does not exist). With
-- ``h`` (the job's fields as a table), nothing is read from Redis.
local function add_row(out, key, id, h)
    out[#out + 1] = id
    if not h then
        h = {}
        local all = redis.call('HGETALL', key)
        for i = 1, #all, 2 do h[all[i]] = all[i + 1] end
    end
    for i = 1, #FIELDS do out[#out + 1] = h[FIELDS[i]] or false end
end

-- Whether q holds ready jobs, or time still has due work for it. q.filled: this call added
-- ready jobs and removed none after (add.lua); q.emptied: a claim's last pop found fewer
-- than it asked for. Either way there is no need to look.
local function has_ready(q)
    return q.backlog or q.filled or (not q.emptied and redis.call('ZCARD', q.r) > 0)
end

-- Set or clear a queue's marker: set while it holds ready jobs it delivers (or time still
-- has due work for it), so that one blocked get wakes and claims.
local function mark(q)
    -- Not while its limits hold jobs back (q.held, see claim.lua): blocked consumers would
    -- spin; the queue is marked again when a slot frees, and polled for its rate.
    if not q.held and has_ready(q) and pause_bits(q) < 2 then
        redis.call('ZADD', q.w, '0', '0')  -- '0': no float spelled
    else
        redis.call('DEL', q.w)
    end
end

-- Every script ends with finish(result): wake-ups, then {removed ids, result}.
local function finish(result)
    for _, q in ipairs(touched) do
        if q.readied then mark(q) end
        if IN_QUEUE_SLOT and q.was_empty and redis.call('ZCARD', q.r) > 0 then
            redis.call('PUBLISH', PREFIX .. 'w:' .. q.name, '')
        end
    end
    for _, id in ipairs(waited) do redis.call('PUBLISH', PREFIX .. 'd:' .. id, '') end
    if done_changed then redis.call('PUBLISH', PREFIX .. 'done', '') end
    if not IN_QUEUE_SLOT then removed = {} end
    return {removed, result}
end

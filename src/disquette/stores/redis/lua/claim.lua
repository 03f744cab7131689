-- claim: lease up to ARGV[5] ready jobs from the queues ARGV[9..], leftmost first,
-- skipping paused queues, to the holder ARGV[6] ("" for none; kept in the job's "h" with
-- the delivery's attempts while it is active). Returns per job: the index of its queue in
-- ARGV[9..], its id, and the CLAIMED fields after the lease, with lease_until in place of
-- ra. When it leases nothing, it returns instead the time the next scheduled job or lease
-- of these queues comes due (or nothing), so that a waiting caller can look again then.
-- Every queue's marker is left set while it holds ready jobs, cleared when it holds none.
--
-- ARGV[4] is a token naming this call: KEYS[2] (the first queue's "t:<token>") keeps the
-- ids it leased for ARGV[7] seconds (the caller's retry window), so that a retry of a call
-- whose reply was lost (a dropped connection, a restart) returns the same jobs instead of
-- leasing others and stranding these. It is one string (SET EX): one call writes it.
--
-- A blocked get queues this script behind its BZPOPMIN, so it runs when the pop returns,
-- with the caller's now of when it was sent: with ARGV[8] "1", KEYS[2] is a stamp the
-- caller set just before (SET "" PX STAMP_MS), and the time it has lived is added to now.
-- Such a call is the first of its token (a blocked get's call is written once, and sent
-- again unstamped): there is no receipt to look for. A retry may find the stamp of a call
-- that never ran (an empty string): no receipt either. A stamp left is deleted, unless
-- the receipt replaces it.
local CLAIMED = {'m', 't', 'r', 'n', 'k', 'ad', 'ec', 'le', 'lu', 'nx', 'cr', 'pg', 'hd', 'do'}
local FIRST_QUEUE = 9
local STAMP_MS = 600000
local RECEIPT = KEYS[2]
local want = tonumber(ARGV[5])
local HOLDER = ARGV[6]
local out = {}
local got = 0
local leased = {}  -- the receipt's records, "<index>:<id length>:<id>"
local stamped = false  -- RECEIPT holds a stamp

local function emit(index, id, v)
    out[#out + 1] = index
    out[#out + 1] = id
    for k = 1, #CLAIMED do out[#out + 1] = v[k] end
end

if ARGV[8] == '1' then
    local left = redis.call('PTTL', RECEIPT)
    if left > 0 then
        NOW = NOW + (STAMP_MS - left) / 1000
        NOW_S = fmt(NOW)
        stamped = true
    end
else
    local earlier = redis.call('GET', RECEIPT)
    stamped = earlier == ''
    if earlier and not stamped then
        local at = 1
        while at <= #earlier do
            local _, stop, index, length = string.find(earlier, '^(%d+):(%d+):', at)
            length = tonumber(length)
            local id = string.sub(earlier, stop + 1, stop + length)
            at = stop + length + 1
            index = tonumber(index)
            local key = job_key(queue(ARGV[FIRST_QUEUE + index - 1]), id)
            local v = redis.call('HMGET', key, 'st', unpack(CLAIMED))
            if v[1] == 'a' then
                table.remove(v, 1)
                emit(index, id, v)
            end
        end
        return finish(out)
    end
end

-- Lease one popped job; false for a ready entry whose job is gone (it is just dropped).
local function lease(q, index, id)
    local key = job_key(q, id)
    local v = redis.call('HMGET', key, 'm', 't', 'r', 'n', 'k', 'ad', 'ec', 'le', 'ra', 'nx', 'cr',
                         'pg', 'hd', 'do', 'h', 'lp')
    if not v[1] then return false end
    local attempts = tonumber(v[4] or 0) + 1
    -- Integers go as text spelled by '%d' (a few hundred instructions): Redis spells a
    -- number given to redis.call by '%.17g', Lua one joined by '..' by '%.14g' (about
    -- 2,000 each, callgrind).
    local n = string.format('%d', attempts)
    local retry_after = tonumber(v[9] or DEFAULTS.ra)
    local lease_until = '+inf'
    if retry_after > 0 then lease_until = fmt(NOW + retry_after) end
    if HOLDER ~= '' then
        redis.call('HSET', key, 'st', 'a', 'n', n, 'la', NOW_S, 'lu', lease_until,
                   'h', HOLDER .. '#' .. n)
    else
        redis.call('HSET', key, 'st', 'a', 'n', n, 'la', NOW_S, 'lu', lease_until)
        -- An earlier delivery's holder must not be able to release this one.
        if v[15] then redis.call('HDEL', key, 'h') end
    end
    if v[16] then redis.call('HDEL', key, 'lp') end  -- the lapsed delivery lost the job
    redis.call('ZADD', q.a, lease_until, id)
    v[4] = attempts
    v[9] = lease_until
    emit(index, id, v)
    leased[#leased + 1] = string.format('%d:%d:', index, #id) .. id
    return true
end

-- How many of room jobs the queue's flow limits (issue 16) let a claim take now: its
-- hash q.lim holds c (concurrency: unexpired leases at most), rc and rp (rate: rc claims
-- per rp seconds), tk and fa (the token bucket's level, when last filled); "" for none.
-- A queue without the hash pays one HMGET. The arithmetic is disquette.stores.limits'.
local function limited_room(q, room)
    local lim = redis.call('HMGET', q.lim, 'c', 'rc', 'rp', 'tk', 'fa')
    if lim[1] and lim[1] ~= '' then
        room = math.min(room, tonumber(lim[1]) - redis.call('ZCOUNT', q.a, '(' .. NOW_S, '+inf'))
    end
    if lim[2] and lim[2] ~= '' then
        local count, per = tonumber(lim[2]), tonumber(lim[3])
        q.level = math.min(count, tonumber(lim[4]) + math.max(0, NOW - tonumber(lim[5])) * count / per)
        room = math.min(room, math.floor(q.level + 1e-9))
    end
    return math.max(room, 0)
end

for i = FIRST_QUEUE, #ARGV do
    local q = queue(ARGV[i])
    q.readied = true  -- finish sets or clears its marker
    tick(q)
    local room = 0
    if got < want and pause_bits(q) < 2 then room = limited_room(q, want - got) end
    local taken = 0
    -- Pop again only when a popped entry had no job, so that count is still honoured.
    local again = room > 0
    while again do
        local popped = redis.call('ZPOPMIN', q.r, string.format('%d', room - taken))
        -- Fewer than asked: the ready set is empty now (mark needs no ZCARD).
        q.emptied = #popped < 2 * (room - taken)
        again = false
        for j = 1, #popped, 2 do
            if lease(q, i - FIRST_QUEUE + 1, string.sub(popped[j], ORDER_BYTES + 1)) then
                got = got + 1
                taken = taken + 1
            else
                again = taken < room
            end
        end
    end
    if q.level then redis.call('HSET', q.lim, 'tk', fmt(q.level - taken), 'fa', NOW_S) end
    q.held = room < want - got + taken and redis.call('EXISTS', q.lim) == 1
end
if got > 0 then
    -- Wall-clock expiry is fine here: the receipt only has to outlive a retry.
    redis.call('SET', RECEIPT, table.concat(leased), 'EX', ARGV[7])
    return finish(out)
end
if stamped then redis.call('DEL', RECEIPT) end
local next_due = nil
for i = FIRST_QUEUE, #ARGV do
    local q = queue(ARGV[i])
    for _, set in ipairs({q.s, q.a}) do
        local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
        if first[2] and first[2] ~= 'inf' then
            local due = tonumber(first[2])
            if not next_due or due < next_due then next_due = due end
        end
    end
end
if next_due then return finish({fmt(next_due)}) end
return finish({})

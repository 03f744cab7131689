-- add: insert jobs, all or none. ARGV[4] max_len ("" for none), ARGV[5] the sequence
-- number before the first job's ("" to take them from <prefix>seq), ARGV[6] a time to hold
-- the jobs until ("" for none: scheduled at that time and marked held, real run_at kept:
-- release.lua makes them deliverable once replicas have them; if a failover loses the
-- release, they come due at that time instead of never), then per queue: name,
-- job count, and per job: id, m, run_at, options. Options is "" when the job has no type,
-- no TTL, no headers, no parents and default priority, retry_after and result_ttl; else a
-- byte of flags (1 priority, 2 expires_at, 4 retry_after, 8 result_ttl, 16 unique, 32
-- headers, 64 parents), for parents their block (see parse_parents in deps.lua), then the
-- values as big-endian int32 or doubles, for a unique job its states mask (a byte),
-- key length (uint16) and key, for headers a uint32 size and their JSON text (kept in the
-- "hd" field), and the type in the rest. Replays of an id already stored are skipped, so a
-- retried call cannot add a job twice; a job whose unique key is held (see key_holder in
-- common.lua; an earlier job of the batch counts) is not created. A job with parents
-- waits for them, or ends at once, or starts as usual (see admit in deps.lua); each parent
-- must be stored or an earlier job of the batch. Returns {"ok", added, then for each job
-- not created for its key: its id, the holder's id}, {"full", queue}, {"paused", queue}
-- (the queue is paused for input) or {"missing", parent id} (nothing added).
local JOB_ARGS = 4
local max_len = tonumber(ARGV[4])
local groups = {}
local incoming = {}
local total = 0
local hold_until = ARGV[6] ~= '' and ARGV[6] or nil
local with_parents = false  -- a job of the batch has parents (options flag 64)
local i = 7
while i <= #ARGV do
    local q = queue(ARGV[i])
    local n = tonumber(ARGV[i + 1])
    -- Only max_len needs what time made due (expired jobs leave, due ones count); other
    -- adds leave that to the next call that reads the queue.
    if max_len then tick(q) end
    groups[#groups + 1] = {q = q, first = i + 2, n = n}
    for j = 0, n - 1 do
        if tonumber(ARGV[i + 2 + j * JOB_ARGS + 2]) <= NOW then
            incoming[q.name] = (incoming[q.name] or 0) + 1
        end
        if not with_parents and (string.byte(ARGV[i + 2 + j * JOB_ARGS + 3]) or 0) >= 64 then
            with_parents = true
        end
    end
    total = total + n
    i = i + 2 + n * JOB_ARGS
end
for _, g in ipairs(groups) do
    if pause_bits(g.q) % 2 == 1 then return finish({'paused', g.q.name}) end
end
if max_len then
    for name, extra in pairs(incoming) do
        if redis.call('ZCARD', queues[name].r) + extra > max_len then
            return finish({'full', name})
        end
    end
end
-- Every parent is stored or an earlier job of the batch: else nothing is added.
if with_parents then
    local batch = {}
    for _, g in ipairs(groups) do
        for j = 0, g.n - 1 do
            local a = g.first + j * JOB_ARGS
            local options = ARGV[a + 3]
            if (string.byte(options) or 0) >= 64 then
                local _, parents = parse_parents(options, 2)
                for _, parent in ipairs(parents) do
                    if not batch[parent[2]]
                        and redis.call('EXISTS', parent_key(g.q, parent)) == 0 then
                        return finish({'missing', parent[2]})
                    end
                end
            end
            batch[ARGV[a]] = true
        end
    end
end
local seq = tonumber(ARGV[5])
if not seq then seq = redis.call('INCRBY', PREFIX .. 'seq', total) - total end
local added = 0
local answer = {'ok', 0}

-- The hash fields of a new job from its options (see above), its expiry (or nil) and its
-- unique key and mask (or nil), its priority, and its do field and parents (or nil).
local function parse_options(fields, options)
    local flags, at = struct.unpack('B', options)
    local value, expires_at, ukey, mask, deps, parents
    local priority = DEFAULTS.p
    if flags >= 64 then
        deps, parents, at = parse_parents(options, at)
        fields[#fields + 1] = 'do'
        fields[#fields + 1] = deps
    end
    if flags % 2 == 1 then
        value, at = struct.unpack('>i', options, at)
        priority = tostring(value)
        fields[#fields + 1] = 'p'
        fields[#fields + 1] = priority
    end
    if math.floor(flags / 2) % 2 == 1 then
        expires_at, at = struct.unpack('>d', options, at)
    end
    if math.floor(flags / 4) % 2 == 1 then
        value, at = struct.unpack('>d', options, at)
        fields[#fields + 1] = 'ra'
        fields[#fields + 1] = fmt(value)
    end
    if math.floor(flags / 8) % 2 == 1 then
        value, at = struct.unpack('>d', options, at)
        fields[#fields + 1] = 'rt'
        fields[#fields + 1] = fmt(value)
    end
    if math.floor(flags / 16) % 2 == 1 then
        local size
        mask, size, at = struct.unpack('>BH', options, at)
        ukey = string.sub(options, at, at + size - 1)
        at = at + size
    end
    if math.floor(flags / 32) % 2 == 1 then
        value, at = struct.unpack('>I4', options, at)
        fields[#fields + 1] = 'hd'
        fields[#fields + 1] = string.sub(options, at, at + value - 1)
        at = at + value
    end
    if at <= #options then
        fields[#fields + 1] = 't'
        fields[#fields + 1] = string.sub(options, at)
    end
    return expires_at, ukey, mask, priority, deps, parents
end

for _, g in ipairs(groups) do
    local q = g.q
    for j = 0, g.n - 1 do
        local a = g.first + j * JOB_ARGS
        local id = ARGV[a]
        local key = job_key(q, id)
        seq = seq + 1
        if redis.call('EXISTS', key) == 0 then
            local run_at = ARGV[a + 2]
            local ready = tonumber(run_at) <= NOW
            local fields = {'q', q.name, 'm', ARGV[a + 1], 'r', run_at, 'sq', seq,
                            'st', ready and 'q' or 's'}
            local expires_at, ukey, mask, holder, deps, parents
            local priority = DEFAULTS.p
            if ARGV[a + 3] ~= '' then
                expires_at, ukey, mask, priority, deps, parents = parse_options(fields, ARGV[a + 3])
            end
            if ukey then holder = key_holder(q, ukey) end
            if holder then
                answer[#answer + 1] = id
                answer[#answer + 1] = holder
            else
                if ukey then
                    redis.call('SET', unique_lock(q, ukey), id)
                    fields[#fields + 1] = 'uk'
                    fields[#fields + 1] = ukey
                    fields[#fields + 1] = 'us'
                    fields[#fields + 1] = mask
                end
                redis.call('HSET', key, unpack(fields))
                if expires_at then redis.call('ZADD', q.e, fmt(expires_at), id) end
                if parents and admit(q, key, id, seq, deps, parents) then
                    -- waiting for its parents, or ended by one
                elseif hold_until then
                    redis.call('HSET', key, 'st', 's', 'hl', '1')
                    redis.call('ZADD', q.s, hold_until, id)
                elseif ready then
                    redis.call('ZADD', q.r, priority, order(run_at, seq) .. id)
                    q.readied = true
                    q.filled = true  -- nothing leaves the ready set after: mark needs no ZCARD
                else
                    redis.call('ZADD', q.s, run_at, id)
                end
                added = added + 1
            end
        end
    end
end
answer[2] = added
return finish(answer)

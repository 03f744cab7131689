-- ack: mark the jobs KEYS done. ARGV[4] is "1" when results follow, ARGV[5] "1" when the
-- callers' deliveries do. Each key has a block of values from ARGV[6], in key order: its
-- delivery (the job's attempts when claimed; "" acts by id) when ARGV[5] is "1", then,
-- when ARGV[4] is "1", "1" if it has a result, the result, and its encoding. A job
-- delivered again since the caller's delivery is left alone (a lapsed one is still the
-- caller's: see held in common.lua); a job whose result_ttl is 0 is deleted at once.
-- A cancelled job stays cancelled. A job with waiting children (field ch, read with the
-- others: nothing more for a job without) releases them (see resolve in deps.lua).
-- Returns the ids of the jobs that became done.
local done = {}
local with_results = ARGV[4] == '1'
local with_attempts = ARGV[5] == '1'
local width = (with_attempts and 1 or 0) + (with_results and 3 or 0)
for i, key in ipairs(KEYS) do
    local at = 6 + (i - 1) * width
    local q, v = locate(key, 'st', 'rt', 'n', 'h', 'lp', 'uk', 'us', 'w', 'ch')
    local delivery = with_attempts and ARGV[at] or ''
    if q and v[2] ~= 'd' and v[2] ~= 'c' and same_delivery(delivery, v[4]) then
        local id = key_id(q, key)
        leave(q, key, id, v[2])
        done[#done + 1] = id
        if v[10] then resolve(key, id, 'done') end
        local result_ttl = tonumber(v[3] or DEFAULTS.rt)
        if result_ttl <= 0 then
            drop(q, key, id)
        else
            if v[9] then waited[#waited + 1] = id end
            free_key(q, id, v[7], v[8], 'd')
            redis.call('HSET', key, 'st', 'd', 'fa', NOW_S)
            if v[5] then redis.call('HDEL', key, 'h') end  -- kept for result_ttl: no dead weight
            if v[6] then take_back_lapse(key) end
            redis.call('ZADD', q.e, fmt(NOW + result_ttl), id)
            local r = at + (with_attempts and 1 or 0)
            if with_results and ARGV[r] == '1' then
                redis.call('HSET', key, 'res', ARGV[r + 1])
                if ARGV[r + 2] ~= '0' then redis.call('HSET', key, 're', ARGV[r + 2]) end
            end
        end
    end
end
return finish(done)

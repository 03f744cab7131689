-- ack: mark the jobs KEYS done. ARGV[4] "1" when results follow: for the i-th key,
-- ARGV[2 + 3i] is "1" when it has a result, ARGV[3 + 3i] the result, ARGV[4 + 3i] its
-- encoding. A job whose result_ttl is 0 is deleted at once.
-- Returns the ids of the jobs that became done.
local done = {}
local with_results = ARGV[4] == '1'
for i, key in ipairs(KEYS) do
    local q, v = locate(key, 'st', 'rt')
    if q and v[2] ~= 'd' then
        local id = key_id(q, key)
        leave(q, key, id, v[2])
        done[#done + 1] = id
        local result_ttl = tonumber(v[3] or DEFAULTS.rt)
        if result_ttl <= 0 then
            drop(q, key, id)
        else
            redis.call('HSET', key, 'st', 'd', 'fa', NOW_S)
            redis.call('ZADD', q.e, fmt(NOW + result_ttl), id)
            if with_results and ARGV[2 + 3 * i] == '1' then
                redis.call('HSET', key, 'res', ARGV[3 + 3 * i])
                if ARGV[4 + 3 * i] ~= '0' then redis.call('HSET', key, 're', ARGV[4 + 3 * i]) end
            end
        end
    end
end
done_changed = #done > 0
return finish(done)

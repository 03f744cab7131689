-- ack: mark the jobs KEYS done. ARGV[4] "1" when there is a result, ARGV[5] the result,
-- ARGV[6] its encoding. A job whose result_ttl is 0 is deleted at once.
-- Returns the ids of the jobs that became done.
local done = {}
for _, key in ipairs(KEYS) do
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
            if ARGV[4] == '1' then
                redis.call('HSET', key, 'res', ARGV[5])
                if ARGV[6] ~= '0' then redis.call('HSET', key, 're', ARGV[6]) end
            end
        end
    end
end
done_changed = #done > 0
return finish(done)

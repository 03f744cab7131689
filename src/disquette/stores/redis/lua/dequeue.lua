-- dequeue: take the ready jobs KEYS out of their queue without delivering them (Disque
-- DEQUEUE): each becomes active, leased for its retry_after (never redelivered when 0),
-- attempts unchanged. Returns how many were ready.
local dequeued = 0
for _, key in ipairs(KEYS) do
    local q, v = locate(key, 'st', 'ra', 'lp')
    if q and v[2] == 'q' then
        local id = key_id(q, key)
        leave(q, key, id, 'q')
        if v[4] then redis.call('HDEL', key, 'lp') end  -- lp means "ready" (common.lua)
        local retry_after = tonumber(v[3] or DEFAULTS.ra)
        local lease_until = '+inf'
        if retry_after > 0 then lease_until = fmt(NOW + retry_after) end
        redis.call('HSET', key, 'st', 'a', 'la', NOW_S, 'lu', lease_until)
        redis.call('HDEL', key, 'h')  -- leased to nobody: no earlier holder may release it
        redis.call('ZADD', q.a, lease_until, id)
        dequeued = dequeued + 1
    end
end
return finish(dequeued)

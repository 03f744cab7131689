-- release: make the held jobs KEYS (see add.lua) deliverable: ready, or scheduled at their
-- run_at. Returns how many were held.
local released = 0
for _, key in ipairs(KEYS) do
    local q, v = locate(key, 'st', 'r', 'p', 'sq')
    if q and v[2] == 's' then
        local id = key_id(q, key)
        if redis.call('HGET', key, 'hl') then
            redis.call('HDEL', key, 'hl')
            redis.call('ZREM', q.s, id)
            if tonumber(v[3]) <= NOW then
                make_ready(q, key, id, v[4], v[3], v[5])
            else
                redis.call('ZADD', q.s, v[3], id)
            end
            released = released + 1
        end
    end
end
return finish(released)

-- nack: put the active jobs KEYS back as ready, at their old place. Returns how many.
local nacked = 0
for _, key in ipairs(KEYS) do
    local q, v = locate(key, 'st', 'p', 'r', 'sq')
    if q and v[2] == 'a' then
        local id = key_id(q, key)
        leave(q, key, id, 'a')
        redis.call('HINCRBY', key, 'k', 1)
        make_ready(q, key, id, v[3], v[4], v[5])
        nacked = nacked + 1
    end
end
return finish(nacked)

-- nack: put the active jobs KEYS back as ready, at their old place. When ARGV[4] is "1",
-- ARGV[4 + i] is the caller's delivery of the i-th job (its attempts; "" acts by id): a
-- job delivered again since is left alone. Returns the ids put back.
local nacked = {}
local with_attempts = ARGV[4] == '1'
for i, key in ipairs(KEYS) do
    local q, v = locate(key, 'st', 'p', 'r', 'sq', 'n')
    local delivery = with_attempts and ARGV[4 + i] or ''
    if q and v[2] == 'a' and same_delivery(delivery, v[6]) then
        local id = key_id(q, key)
        leave(q, key, id, 'a')
        redis.call('HINCRBY', key, 'k', 1)
        make_ready(q, key, id, v[3], v[4], v[5])
        nacked[#nacked + 1] = id
    end
end
return finish(nacked)

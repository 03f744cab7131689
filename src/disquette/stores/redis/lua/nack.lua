-- nack: put the held jobs KEYS (see held in common.lua) back as ready, at their old place.
-- When ARGV[4] is "1", ARGV[4 + i] is the caller's delivery of the i-th job (its
-- attempts; "" acts by id): a job delivered again since is left alone. Returns the id
-- and the queue of each job put back, in turn.
local nacked = {}
local with_attempts = ARGV[4] == '1'
for i, key in ipairs(KEYS) do
    local q, v = locate(key, 'st', 'p', 'r', 'sq', 'n', 'lp')
    local delivery = with_attempts and ARGV[4 + i] or ''
    if q and held(v[2], v[7]) and same_delivery(delivery, v[6]) then
        local id = key_id(q, key)
        redis.call('HINCRBY', key, 'k', 1)
        if v[7] then
            take_back_lapse(key)  -- ready in its old place already
        else
            leave(q, key, id, 'a')
            make_ready(q, key, id, v[3], v[4], v[5])
        end
        nacked[#nacked + 1] = id
        nacked[#nacked + 1] = q.name
    end
end
return finish(nacked)

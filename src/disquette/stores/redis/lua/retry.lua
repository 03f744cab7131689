-- retry: make the failed job KEYS[1] ready now. Returns {"ok"}, {"missing"},
-- {"state", st} or {"taken", holder} (another job took its unique key meanwhile).
local key = KEYS[1]
local q, v = locate(key, 'st', 'p', 'sq', 'uk')
if not q then return finish({'missing'}) end
if v[2] ~= 'f' then return finish({'state', v[2]}) end
local id = key_id(q, key)
if v[5] then
    local holder = key_holder(q, v[5])
    if holder and holder ~= id then return finish({'taken', holder}) end
    redis.call('SET', unique_lock(q, v[5]), id)
end
leave(q, key, id, 'f')
redis.call('HSET', key, 'r', NOW_S)
redis.call('HDEL', key, 'fa')
make_ready(q, key, id, v[3], NOW_S, v[4])
return finish({'ok'})

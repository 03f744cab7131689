-- retry: make the failed job KEYS[1] ready now. Returns {"ok"}, {"missing"} or
-- {"state", st}.
local key = KEYS[1]
local q, v = locate(key, 'st', 'p', 'sq')
if not q then return finish({'missing'}) end
if v[2] ~= 'f' then return finish({'state', v[2]}) end
local id = key_id(q, key)
leave(q, key, id, 'f')
redis.call('HSET', key, 'r', NOW_S)
redis.call('HDEL', key, 'fa')
make_ready(q, key, id, v[3], NOW_S, v[4])
return finish({'ok'})

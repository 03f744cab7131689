-- cancel: cancel the job KEYS[1]. With ARGV[4] "" (a user's request), a scheduled or
-- queued job (a lapsed one too: its requeue is taken back) ends cancelled, and an active
-- one gets the cancel request "cr" (published on "<prefix>cancel"). With ARGV[4] an
-- attempts count (the holder), the job that delivery holds (see held) ends cancelled.
-- A waiting job (dependencies) ends cancelled too; a job's waiting children are resolved
-- (see resolve in deps.lua). A cancelled job is kept for its result_ttl, as a done one.
-- Returns {"cancelled"}, {"requested"}, {"missing"}, {"lost", attempts, st} or
-- {"state", st}.
local key = KEYS[1]
local q, v = locate(key, 'st', 'rt', 'n', 'lp', 'ch')
if not q then return finish({'missing'}) end
local delivery = ARGV[4]
local state = v[2]
if delivery ~= '' then
    if not same_delivery(delivery, v[4]) then return finish({'lost', v[4] or '0', state}) end
    if not held(state, v[5]) then return finish({'state', state}) end
elseif state == 'a' then
    redis.call('HSET', key, 'cr', '1')
    redis.call('PUBLISH', PREFIX .. 'cancel', '')
    return finish({'requested'})
elseif state ~= 's' and state ~= 'q' and state ~= 'w' then
    return finish({'state', state})
end
local id = key_id(q, key)
leave(q, key, id, state)
if v[5] then take_back_lapse(key) end
if v[6] then resolve(key, id, 'cancelled') end
local result_ttl = tonumber(v[3] or DEFAULTS.rt)
if result_ttl <= 0 then
    drop(q, key, id)
    return finish({'cancelled'})
end
ended(key, id)
redis.call('HSET', key, 'st', 'c', 'fa', NOW_S)
redis.call('HDEL', key, 'h')
redis.call('ZADD', q.e, fmt(NOW + result_ttl), id)
return finish({'cancelled'})

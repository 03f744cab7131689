-- working: extend the lease of the held job KEYS[1] (see held in common.lua: a lapsed one
-- is leased again) to now + its retry_after, if ARGV[4] is its current delivery (its
-- attempts; "" acts by id); with ARGV[5] (not ""), record it as the job's progress too.
-- Returns {"ok", lease_until}, {"none"} (at-most-once job), {"missing"}, {"lost", attempts,
-- st} (delivered again since), {"state", st} or {"cancel"} (a cancel was requested).
local key = KEYS[1]
local q, v = locate(key, 'st', 'ra', 'n', 'lp', 'cr')
if not q then return finish({'missing'}) end
if not same_delivery(ARGV[4], v[4]) then return finish({'lost', v[4] or '0', v[2]}) end
if not held(v[2], v[5]) then return finish({'state', v[2]}) end
if v[6] then return finish({'cancel'}) end
if ARGV[5] ~= '' then redis.call('HSET', key, 'pg', ARGV[5]) end
local retry_after = tonumber(v[3] or DEFAULTS.ra)
if retry_after <= 0 then return finish({'none'}) end
local id = key_id(q, key)
if v[5] then
    leave(q, key, id, 'q')
    take_back_lapse(key)
end
local lease_until = fmt(NOW + retry_after)
redis.call('HSET', key, 'st', 'a', 'lu', lease_until)
redis.call('ZADD', q.a, lease_until, id)
return finish({'ok', lease_until})

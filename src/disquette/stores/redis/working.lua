-- working: extend the lease of the active job KEYS[1] by its retry_after.
-- Returns {"ok", lease_until}, {"none"} (at-most-once job), {"missing"} or {"state", st}.
local key = KEYS[1]
local q, v = locate(key, 'st', 'ra')
if not q then return finish({'missing'}) end
if v[2] ~= 'a' then return finish({'state', v[2]}) end
local retry_after = tonumber(v[3] or DEFAULTS.ra)
if retry_after <= 0 then return finish({'none'}) end
local lease_until = fmt(NOW + retry_after)
redis.call('HSET', key, 'lu', lease_until)
redis.call('ZADD', q.a, lease_until, key_id(q, key))
return finish({'ok', lease_until})

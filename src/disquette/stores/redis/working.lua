-- working: extend the lease of the active job KEYS[1] by its retry_after, if ARGV[4] is
-- its current delivery (its attempts; "" acts by id). Returns {"ok", lease_until},
-- {"none"} (at-most-once job), {"missing"}, {"lost", attempts, st} (delivered again
-- since) or {"state", st}.
local key = KEYS[1]
local q, v = locate(key, 'st', 'ra', 'n')
if not q then return finish({'missing'}) end
if not same_delivery(ARGV[4], v[4]) then return finish({'lost', v[4] or '0', v[2]}) end
if v[2] ~= 'a' then return finish({'state', v[2]}) end
local retry_after = tonumber(v[3] or DEFAULTS.ra)
if retry_after <= 0 then return finish({'none'}) end
local lease_until = fmt(NOW + retry_after)
redis.call('HSET', key, 'lu', lease_until)
redis.call('ZADD', q.a, lease_until, key_id(q, key))
return finish({'ok', lease_until})

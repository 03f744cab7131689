-- fail: record an error (ARGV[4]) on the active job KEYS[1]; it runs again at ARGV[5],
-- or is kept as failed when ARGV[5] is "". Returns 1 if the job was active, else 0.
local key = KEYS[1]
local q, v = locate(key, 'st', 'p', 'sq')
if not q or v[2] ~= 'a' then return finish(0) end
local id = key_id(q, key)
leave(q, key, id, 'a')
redis.call('HINCRBY', key, 'ec', 1)
redis.call('HSET', key, 'le', ARGV[4])
local retry_at = ARGV[5]
if retry_at == '' then
    redis.call('HSET', key, 'st', 'f', 'fa', NOW_S, 'nx', '1')
    redis.call('ZREM', q.e, id)
    redis.call('ZADD', q.f, NOW_S, failed_member(v[4], id))
    done_changed = true
elseif tonumber(retry_at) <= NOW then
    redis.call('HSET', key, 'r', retry_at)
    make_ready(q, key, id, v[3], retry_at, v[4])
else
    redis.call('HSET', key, 'r', retry_at, 'st', 's')
    redis.call('ZADD', q.s, retry_at, id)
end
return finish(1)

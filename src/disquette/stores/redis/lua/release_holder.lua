-- release_holder: give back every active job of the queues ARGV[6..] leased to the holder
-- ARGV[4] (a process known to be dead), as if its lease ran out now; an at-most-once job is
-- never delivered twice: it is failed instead, with the error ARGV[5]. The active sets
-- hold only the jobs in flight, so this reads those, not the queues' backlog. Returns
-- how many jobs the holder held (see "h" in common.lua).
local holder = ARGV[4]
local released = 0
for i = 6, #ARGV do
    local q = queue(ARGV[i])
    tick(q)
    for _, id in ipairs(redis.call('ZRANGE', q.a, 0, -1)) do
        local key = job_key(q, id)
        local v = redis.call('HMGET', key, 'h', 'ra', 'p', 'sq', 'n')
        -- Only the delivery the holder's claim made: a later claim by a process of the
        -- previous version increments attempts but leaves h as it was.
        if v[1] == holder .. '#' .. (v[5] or '0') then
            redis.call('HDEL', key, 'h')
            if tonumber(v[2] or DEFAULTS.ra) > 0 then
                requeue_stale(q, key, id)
            else
                record_error(q, key, id, ARGV[5], '', v[3], v[4])
            end
            released = released + 1
        end
    end
end
return finish(released)

-- counts (queue_counts, issue 14): for each queue ARGV[5..]: its name, pause bits, its
-- ready, scheduled, active and failed jobs (the cardinality of their sets: exact), its done
-- and cancelled jobs among the first ARGV[4] members of its expiry set (which holds them
-- and the pending jobs with a TTL), the size of that set (at most ARGV[4]: those two counts
-- are exact), the run_at and head of "m" (flags, encoding, created_at) of the job a
-- claim would take next (false, false: none is ready), and its waiting jobs (exact). Reads at most ARGV[4] + 1 job
-- hashes per queue, whatever the queue holds.
local out = {}
local window = tonumber(ARGV[4])
for i = 5, #ARGV do
    local q = queue(ARGV[i])
    tick(q)
    local done, cancelled = 0, 0
    for _, id in ipairs(redis.call('ZRANGE', q.e, 0, window - 1)) do
        local state = redis.call('HGET', job_key(q, id), 'st')
        if state == 'd' then
            done = done + 1
        elseif state == 'c' then
            cancelled = cancelled + 1
        end
    end
    local run_at, head = false, false
    local first = redis.call('ZRANGE', q.r, 0, 0)[1]
    if first then
        local v = redis.call('HMGET', job_key(q, string.sub(first, ORDER_BYTES + 1)), 'r', 'm')
        run_at, head = v[1], string.sub(v[2] or '', 1, 10)
    end
    out[#out + 1] = q.name
    out[#out + 1] = pause_bits(q)
    out[#out + 1] = redis.call('ZCARD', q.r)
    out[#out + 1] = redis.call('ZCARD', q.s)
    out[#out + 1] = redis.call('ZCARD', q.a)
    out[#out + 1] = redis.call('ZCARD', q.f)
    out[#out + 1] = done
    out[#out + 1] = cancelled
    out[#out + 1] = redis.call('ZCARD', q.e)
    out[#out + 1] = run_at
    out[#out + 1] = head
    out[#out + 1] = redis.call('ZCARD', q.b)
end
return finish(out)

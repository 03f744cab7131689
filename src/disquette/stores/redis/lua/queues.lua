-- queues: for each queue ARGV[4..]: its name, ready count, pause bits and whether it
-- holds any live job (every live job is in one of the state sets, or done and in the
-- expiry set).
local out = {}
for i = 4, #ARGV do
    local q = queue(ARGV[i])
    tick(q)
    local live = 0
    for _, set in ipairs(job_sets(q)) do
        live = live + redis.call('ZCARD', set[1])
    end
    out[#out + 1] = q.name
    out[#out + 1] = redis.call('ZCARD', q.r)
    out[#out + 1] = pause_bits(q)
    out[#out + 1] = live
end
return finish(out)

-- recover: requeue the lapsed leases of the queues ARGV[5..] and, when ARGV[4] is not "",
-- every job leased at or before ARGV[4]. Returns how many jobs went back.
local recovered = 0
for i = 5, #ARGV do
    local q = queue(ARGV[i])
    recovered = recovered + tick(q)
    if ARGV[4] ~= '' then
        local before = tonumber(ARGV[4])
        for _, id in ipairs(redis.call('ZRANGE', q.a, 0, -1)) do
            local key = job_key(q, id)
            if tonumber(redis.call('HGET', key, 'la')) <= before then
                requeue_stale(q, key, id)
                recovered = recovered + 1
            end
        end
    end
end
return finish(recovered)

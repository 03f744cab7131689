-- flush: delete up to ARGV[5] jobs of queue ARGV[4], and once none is left its pause
-- mode and sets. Returns how many jobs are left (call again until 0).
local q = queue(ARGV[4])
local budget = tonumber(ARGV[5])
local function take(set, skip)
    while budget > 0 do
        local members = redis.call('ZRANGE', set, 0, budget - 1)
        if #members == 0 then return end
        for _, member in ipairs(members) do
            local id = string.sub(member, skip + 1)
            redis.call('ZREM', set, member)
            local key = job_key(q, id)
            local u = redis.call('HMGET', key, 'uk', 'us', 'ch')
            free_key(q, id, u[1], u[2], nil)
            if u[3] then redis.call('DEL', key .. ':c') end
            if redis.call('DEL', key) == 1 then removed[#removed + 1] = id end
            budget = budget - 1
        end
    end
end
local sets = job_sets(q)
for _, set in ipairs(sets) do take(set[1], set[2]) end
local left = 0
for _, set in ipairs(sets) do left = left + redis.call('ZCARD', set[1]) end
if left == 0 then
    redis.call('DEL', q.p, q.w)
    q.bits = 0
end
done_changed = true
return finish(left)

-- failed: the rows of up to ARGV[4] failed jobs of each queue ARGV[5..], oldest first.
local limit = tonumber(ARGV[4])
local out = {}
for i = 5, #ARGV do
    local q = queue(ARGV[i])
    tick(q)
    for _, member in ipairs(redis.call('ZRANGE', q.f, 0, limit - 1)) do
        local id = string.sub(member, 7)
        add_row(out, job_key(q, id), id)
    end
end
return finish(out)

-- peek: the rows of the next ARGV[5] ready jobs of queue ARGV[4], in delivery order.
local q = queue(ARGV[4])
tick(q)
local out = {}
for _, member in ipairs(redis.call('ZRANGE', q.r, 0, tonumber(ARGV[5]) - 1)) do
    local id = string.sub(member, ORDER_BYTES + 1)
    add_row(out, job_key(q, id), id)
end
return finish(out)

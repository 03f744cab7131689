-- scan: one page of a walk over the jobs of the queues ARGV[7..] in enqueue order (Disque
-- JSCAN): the rows of up to ARGV[4] jobs whose sequence number is at least ARGV[5],
-- in the states ARGV[6] (letters, "" for all), each row followed by its sequence number.
-- It reads every job of these queues: an administrative walk, not a hot path.
local count, first = tonumber(ARGV[4]), tonumber(ARGV[5])
local states = ARGV[6]
local found = {}
for i = 7, #ARGV do
    local q = queue(ARGV[i])
    tick(q)
    local seen = {}
    for _, set in ipairs(job_sets(q)) do
        for _, member in ipairs(redis.call('ZRANGE', set[1], 0, -1)) do
            local id = string.sub(member, set[2] + 1)
            if not seen[id] then
                seen[id] = true
                local key = job_key(q, id)
                local v = redis.call('HMGET', key, 'sq', 'st')
                local seq = tonumber(v[1])
                if seq and seq >= first and (states == '' or string.find(states, v[2], 1, true)) then
                    found[#found + 1] = {seq, key, id}
                end
            end
        end
    end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
local out = {}
for j = 1, math.min(count, #found) do
    add_row(out, found[j][2], found[j][3])
    out[#out + 1] = found[j][1]
end
return finish(out)

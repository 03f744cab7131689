-- stats: aggregate one chunk of queue ARGV[4]'s jobs per type, starting at rank ARGV[6]
-- of set number ARGV[5] (1 ready, 2 scheduled, 3 active, 4 failed, 5 expiries, where
-- only done and cancelled jobs count, 6 waiting), at most ARGV[7] jobs. A big queue is
-- read in several calls so that Redis is never blocked for long.
-- Returns {pause bits, next set (0 at the end), next rank, rows...}, each row being
-- type (false for none), scheduled, queued, active, done, failed, max error count,
-- oldest pending run_at (false for none), cancelled, waiting.
local q = queue(ARGV[4])
tick(q)
local sets = job_sets(q)
local STATE_COLUMN = {s = 2, q = 3, a = 4, d = 5, f = 6, c = 9, w = 10}
local set, rank, budget = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local by_type, types = {}, {}
while set <= #sets and budget > 0 do
    local members = redis.call('ZRANGE', sets[set][1], rank, rank + budget - 1)
    for _, member in ipairs(members) do
        local id = string.sub(member, sets[set][2] + 1)
        local v = redis.call('HMGET', job_key(q, id), 't', 'st', 'ec', 'r')
        if set ~= 5 or v[2] == 'd' or v[2] == 'c' then
            local name = v[1] or '\0'
            local row = by_type[name]
            if not row then
                row = {v[1], 0, 0, 0, 0, 0, 0, false, 0, 0}
                by_type[name] = row
                types[#types + 1] = name
            end
            row[STATE_COLUMN[v[2]]] = row[STATE_COLUMN[v[2]]] + 1
            if v[2] ~= 'd' then
                row[7] = math.max(row[7], tonumber(v[3] or 0))
            end
            if v[2] == 's' or v[2] == 'q' or v[2] == 'a' then
                if not row[8] or tonumber(v[4]) < tonumber(row[8]) then row[8] = v[4] end
            end
        end
    end
    budget = budget - #members
    rank = rank + #members
    if budget > 0 then
        set = set + 1
        rank = 0
    end
end
local out = {pause_bits(q), set <= #sets and set or 0, rank}
for _, name in ipairs(types) do
    for _, value in ipairs(by_type[name]) do out[#out + 1] = value end
end
return finish(out)

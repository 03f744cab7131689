-- fail: record an error (ARGV[4]) on the held job KEYS[1] (see held in common.lua); it
-- runs again at ARGV[5], or is kept as failed when ARGV[5] is "". ARGV[6] is the caller's
-- delivery (the job's attempts when claimed; "" acts by id): a job delivered again since
-- is left alone. Returns 1 if the job was held (by that delivery), else 0.
local key = KEYS[1]
local q, v = locate(key, 'st', 'p', 'sq', 'n', 'lp')
if not q or not held(v[2], v[6]) or not same_delivery(ARGV[6], v[5]) then return finish(0) end
local id = key_id(q, key)
if v[6] then
    leave(q, key, id, 'q')
    take_back_lapse(key)
end
record_error(q, key, id, ARGV[4], ARGV[5], v[3], v[4])
return finish(1)

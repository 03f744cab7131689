-- fail: record an error (ARGV[4]) on the active job KEYS[1]; it runs again at ARGV[5],
-- or is kept as failed when ARGV[5] is "". ARGV[6] is the caller's delivery (the job's
-- attempts when claimed; "" acts by id): a job delivered again since is left alone.
-- Returns 1 if the job was active (on that delivery), else 0.
local key = KEYS[1]
local q, v = locate(key, 'st', 'p', 'sq', 'n')
if not q or v[2] ~= 'a' or not same_delivery(ARGV[6], v[5]) then return finish(0) end
record_error(q, key, key_id(q, key), ARGV[4], ARGV[5], v[3], v[4])
return finish(1)

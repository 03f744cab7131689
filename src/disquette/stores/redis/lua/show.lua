-- show: the rows of the jobs KEYS (all fields false for a job that does not exist).
local out = {}
for _, key in ipairs(KEYS) do
    local q = locate(key)
    if q then
        add_row(out, key, key_id(q, key))
    else
        add_row(out, key, '', {})
    end
end
return finish(out)

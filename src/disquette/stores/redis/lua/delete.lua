-- delete: remove the jobs KEYS in any state. Returns how many existed.
local deleted = 0
for _, key in ipairs(KEYS) do
    local q = locate(key)
    if q and remove(q, key, key_id(q, key)) then deleted = deleted + 1 end
end
return finish(deleted)

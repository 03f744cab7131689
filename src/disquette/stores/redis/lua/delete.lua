-- delete: remove the jobs KEYS in any state (their waiting children are told: see
-- resolve in deps.lua). Returns how many existed.
local deleted = 0
for _, key in ipairs(KEYS) do
    local q = locate(key)
    if q and remove(q, key, key_id(q, key), 'deleted') then deleted = deleted + 1 end
end
return finish(deleted)

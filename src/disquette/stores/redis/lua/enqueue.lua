-- enqueue: make the scheduled or active jobs KEYS ready now, at their old place (Disque
-- ENQUEUE). A job delivered before counts an additional delivery; a delivered
-- at-most-once job is left alone. Returns the id and the queue of each job made ready,
-- in turn.
local enqueued = {}
for _, key in ipairs(KEYS) do
    local q, v = locate(key, 'st', 'n', 'ra', 'p', 'r', 'sq')
    if q and (v[2] == 's' or v[2] == 'a') then
        local attempts = tonumber(v[3] or 0)
        if attempts == 0 or tonumber(v[4] or DEFAULTS.ra) > 0 then
            local id = key_id(q, key)
            leave(q, key, id, v[2])
            if attempts > 0 then redis.call('HINCRBY', key, 'ad', 1) end
            make_ready(q, key, id, v[5], v[6], v[7])
            enqueued[#enqueued + 1] = id
            enqueued[#enqueued + 1] = q.name
        end
    end
end
return finish(enqueued)

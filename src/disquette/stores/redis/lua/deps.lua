-- Job dependencies (issue 16), shared by every script after common.lua (any script's tick
-- may expire a parent). A job added with parents still pending waits in state w, in its
-- queue's set <prefix>{Q}:b, with do (its policy letter, then its parents' ids) and dc
-- (how many parents are still pending). Each pending parent gets field ch and the child's
-- job key in the list "<parent's job key>:c". When a parent ends, resolve() walks that list
-- once and deletes it: a child that is no longer waiting (cancelled, deleted, acked by id
-- meanwhile) is skipped. A parent without ch costs its ack the one field read with the
-- others: dependency-free jobs pay nothing more.
--
-- On one server a job's key follows from its id, so parents may live in any queue. On a
-- Cluster the caller refuses a parent in another hash slot than its child's queue (every
-- key a script touches is in its slot), and names the parent's queue when it differs.

-- How long a job id is (disquette.job.check_job_id): parents are packed without separator.
local ID_BYTES = 40

-- The parents block of an add's options (flag 64, right after the flags byte): policy (a
-- byte: 0 fail, 1 run), count (uint16), then per parent its queue's name (uint16 length,
-- 0 for the child's own queue) and its id. Returns the do field, the parents as
-- {queue name or false, id}, and where the rest of the options start.
local function parse_parents(options, at)
    local policy, count
    policy, count, at = struct.unpack('>BH', options, at)
    local parents = {}
    local ids = {policy == 1 and 'r' or 'f'}
    for n = 1, count do
        local size
        size, at = struct.unpack('>H', options, at)
        local name = size > 0 and string.sub(options, at, at + size - 1)
        at = at + size
        local id = string.sub(options, at, at + ID_BYTES - 1)
        at = at + ID_BYTES
        parents[n] = {name, id}
        ids[n + 1] = id
    end
    return table.concat(ids), parents, at
end

-- The job key of a parent {queue name or false, id} of a child of queue q.
local function parent_key(q, parent)
    if IN_QUEUE_SLOT and parent[1] then return job_key(queue(parent[1]), parent[2]) end
    return job_key(q, parent[2])
end

-- The last_error of a child ended by its parent (disquette.stores.types.dependency_error).
local function dependency_error(parent_id, parent_end)
    return 'dependency ' .. parent_id .. ' ' .. parent_end
end

-- End a job that may no longer run because of a parent (already out of its state's set):
-- failed (kept until deleted) or cancelled (kept for its result_ttl, deleted at once when
-- that is 0), with last_error err; its waiters are told.
local function end_dependant(q, key, id, state, err)
    local v = redis.call('HMGET', key, 'uk', 'us', 'rt', 'sq')
    free_key(q, id, v[1], v[2], state)
    if state == 'f' then
        redis.call('HSET', key, 'st', 'f', 'fa', NOW_S, 'nx', '1', 'le', err)
        redis.call('ZREM', q.e, id)
        redis.call('ZADD', q.f, NOW_S, failed_member(v[4], id))
        ended(key, id)
        return
    end
    local result_ttl = tonumber(v[3] or DEFAULTS.rt)
    if result_ttl <= 0 then
        drop(q, key, id)
        return
    end
    redis.call('HSET', key, 'st', 'c', 'fa', NOW_S, 'le', err)
    redis.call('ZADD', q.e, fmt(NOW + result_ttl), id)
    ended(key, id)
end

-- A waiting job whose last pending parent ended: ready, its run_at raised to now (behind
-- the jobs already queued), or scheduled until a later run_at. v: its r, p and sq.
local function release_child(q, key, id, v)
    leave(q, key, id, 'w')
    local run_at = v[1]
    if tonumber(run_at) < NOW then run_at = NOW_S end
    redis.call('HSET', key, 'r', run_at)
    if tonumber(run_at) <= NOW then
        make_ready(q, key, id, v[2], run_at, v[3])
    else
        redis.call('HSET', key, 'st', 's')
        redis.call('ZADD', q.s, run_at, id)
    end
end

-- A new job of queue q with parents (stored, in no state's set yet) whose do field is
-- deps: registered as waiting with its pending parents and true; ended at once after a
-- parent that ended without being done (policy fail) and true; false when it starts as
-- usual (no parent pending). A parent gone meanwhile (a job of the same add not created
-- for its unique key) counts as deleted.
local function admit(q, key, id, seq, deps, parents)
    local policy = string.sub(deps, 1, 1)
    local pending = {}
    for _, parent in ipairs(parents) do
        local pkey = parent_key(q, parent)
        local state = redis.call('HGET', pkey, 'st')
        if not state or state == 'f' or state == 'c' then
            if policy == 'f' then
                local why = state == 'f' and 'failed' or (state and 'cancelled' or 'deleted')
                end_dependant(q, key, id, state == 'f' and 'f' or 'c',
                              dependency_error(parent[2], why))
                return true
            end
        elseif state ~= 'd' then
            pending[#pending + 1] = pkey
        end
    end
    if #pending == 0 then return false end
    for _, pkey in ipairs(pending) do
        redis.call('RPUSH', pkey .. ':c', key)
        redis.call('HSET', pkey, 'ch', '1')
    end
    redis.call('HSET', key, 'st', 'w', 'dc', #pending)
    redis.call('ZADD', q.b, seq, id)
    return true
end

-- The job key (with field ch) of job id ended as why ("done", "failed", "cancelled",
-- "deleted" or "expired"): apply that to its waiting children (done, or policy run: one
-- parent fewer to wait for, released at none; else the child ends, failed after a failed
-- parent, cancelled after the others), and a child's end to its own children in turn.
-- Called before the job's hash may be deleted; leaves it without ch and its list.
resolve = function(key, id, why)
    local work = {{key, id, why}}
    while #work > 0 do
        local item = table.remove(work)
        local list = item[1] .. ':c'
        local children = redis.call('LRANGE', list, 0, -1)
        redis.call('DEL', list)
        redis.call('HDEL', item[1], 'ch')
        for _, child in ipairs(children) do
            local v = redis.call('HMGET', child, 'st', 'q', 'do', 'dc', 'r', 'p', 'sq', 'ch')
            if v[1] == 'w' then
                local q = queue(v[2])
                local child_id = key_id(q, child)
                if item[3] == 'done' or string.sub(v[3], 1, 1) == 'r' then
                    local left = tonumber(v[4]) - 1
                    if left > 0 then
                        redis.call('HSET', child, 'dc', left)
                    else
                        release_child(q, child, child_id, {v[5], v[6], v[7]})
                    end
                else
                    local state = item[3] == 'failed' and 'f' or 'c'
                    leave(q, child, child_id, 'w')
                    end_dependant(q, child, child_id, state, dependency_error(item[2], item[3]))
                    if v[8] then
                        local child_end = state == 'f' and 'failed' or 'cancelled'
                        work[#work + 1] = {child, child_id, child_end}
                    end
                end
            end
        end
    end
end

-- pause: change queue ARGV[4]'s pause bits (see common.lua): ARGV[5] "set" makes them
-- ARGV[6]; "out" sets (ARGV[6] "1") or clears ("0") the delivery bit alone. Waiters are
-- woken when delivery may resume. Returns the new bits.
local q = queue(ARGV[4])
local bits = pause_bits(q)
if ARGV[5] == 'set' then
    bits = tonumber(ARGV[6])
elseif ARGV[6] == '1' then
    if bits < 2 then bits = bits + 2 end
elseif bits >= 2 then
    bits = bits - 2
end
if bits == 0 then
    redis.call('DEL', q.p)
else
    redis.call('SET', q.p, bits)
end
q.bits = bits
q.readied = true  -- finish sets the marker when delivery resumes, clears it on a pause
if IN_QUEUE_SLOT and bits < 2 then redis.call('PUBLISH', PREFIX .. 'w:' .. q.name, '') end
return finish(bits)

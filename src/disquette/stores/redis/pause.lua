-- pause: stop (ARGV[5] "1") or restart ("") delivery from queue ARGV[4].
local q = queue(ARGV[4])
if ARGV[5] == '1' then
    redis.call('SET', q.p, '1')
else
    redis.call('DEL', q.p)
    redis.call('PUBLISH', PREFIX .. 'w:' .. q.name, '')
end
return finish(0)

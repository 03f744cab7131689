-- qlen: how many jobs of queue ARGV[4] are ready.
local q = queue(ARGV[4])
tick(q)
return finish(redis.call('ZCARD', q.r))

-- ARGV: P, id, now. Returns 1 when the entry exists.
local key = P .. ':e:' .. ARGV[2]
local ns = redis.call('HGET', key, 'ns')
if not ns then return 0 end
redis.call('HSET', key, 'a', ARGV[3])
redis.call('HINCRBY', key, 'n', 1)
local m = pad(ARGV[2])
redis.call('ZADD', P .. ':lru', ARGV[3], m)
redis.call('ZADD', P .. ':lru:' .. ns, ARGV[3], m)
return 1

-- ARGV: P, namespace, query_hash. Returns nil, or {id, HGETALL of the entry}.
local id = redis.call('HGET', P .. ':h:' .. ARGV[2], ARGV[3])
if not id then return false end
return {id, redis.call('HGETALL', P .. ':e:' .. id)}

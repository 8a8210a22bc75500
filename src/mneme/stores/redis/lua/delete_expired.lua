-- ARGV: P, now, scoped ('1'/'0'), namespace. Returns the number removed.
local scoped = ARGV[3] == '1'
local ns = nil
local key = P .. ':exp'
if scoped then
  ns = ARGV[4]
  key = key .. ':' .. ns
end
local removed = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[2])) do
  if remove_id(unpad(m)) then removed = removed + 1 end
end
local counted, gone = reap(ns)
if removed + gone > 0 then redis.call('INCR', P .. ':version') end
return removed + counted

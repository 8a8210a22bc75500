-- ARGV: P, namespace. Returns the number removed.
local removed = 0
for _, m in ipairs(redis.call('ZRANGE', P .. ':lru:' .. ARGV[2], 0, -1)) do
  if remove_id(unpad(m)) then removed = removed + 1 end
end
if removed > 0 then redis.call('INCR', P .. ':version') end
return removed

-- ARGV: P. 1 when the indexes agree with each other, else 0.
local total = redis.call('ZCARD', P .. ':ids')
if redis.call('HLEN', P .. ':loc') ~= total or redis.call('ZCARD', P .. ':lru') ~= total
    or redis.call('ZCARD', P .. ':created') ~= total
    or redis.call('ZCARD', P .. ':exp') > total then
  return 0
end
local sum = 0
local counts = redis.call('HGETALL', P .. ':ns')
for i = 1, #counts, 2 do
  local ns, c = counts[i], tonumber(counts[i + 1])
  if c <= 0 or redis.call('ZCARD', P .. ':lru:' .. ns) ~= c
      or redis.call('HLEN', P .. ':h:' .. ns) ~= c then
    return 0
  end
  sum = sum + c
end
if sum ~= total then return 0 end
if total > 0 then
  local last = redis.call('ZRANGE', P .. ':ids', -1, -1)[1]
  if tonumber(unpad(last)) > tonumber(redis.call('GET', P .. ':seq') or '0') then return 0 end
end
return 1

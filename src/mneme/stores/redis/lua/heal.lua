-- ARGV: P, ids... Unlinks those whose entry key is gone (a point read met them).
local gone = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if redis.call('EXISTS', P .. ':e:' .. id) == 0 and remove_id(id) then gone = gone + 1 end
end
if gone > 0 then redis.call('INCR', P .. ':version') end
return gone

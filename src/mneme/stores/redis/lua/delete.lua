-- ARGV: P, ids... Returns a flat list namespace, deleted, namespace, deleted, ...
local counts, removed = {}, 0
for i = 2, #ARGV do
  local ns = remove_id(ARGV[i])
  if ns then
    counts[ns] = (counts[ns] or 0) + 1
    removed = removed + 1
  end
end
if removed > 0 then redis.call('INCR', P .. ':version') end
local out = {}
for ns, c in pairs(counts) do
  out[#out + 1] = ns
  out[#out + 1] = c
end
return out

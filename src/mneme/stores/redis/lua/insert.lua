-- ARGV: P, native ('1'/'0'), then per entry: ns, qh, query, response, embedding,
-- metadata JSON, created_at, last_accessed_at, access_count, ttl (''), expires_at (''),
-- locator JSON. Returns the ids in input order.
local native = ARGV[2] == '1'
local width = 12
local count = (#ARGV - 2) / width
local now_ms = 0
if native then
  local t = redis.call('TIME')
  now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local out = {}
for i = 0, count - 1 do
  local b = 3 + i * width
  local ns, qh = ARGV[b], ARGV[b + 1]
  local hkey = P .. ':h:' .. ns
  local id = redis.call('HGET', hkey, qh)
  if not id then
    id = string.format('%d', redis.call('INCR', P .. ':seq'))
    redis.call('HSET', hkey, qh, id)
    redis.call('HINCRBY', P .. ':ns', ns, 1)
    redis.call('HSET', P .. ':loc', id, ARGV[b + 11])
  end
  local key = P .. ':e:' .. id
  local m = pad(id)
  local ttl, expires = ARGV[b + 9], ARGV[b + 10]
  redis.call('DEL', key)
  redis.call('HSET', key, 'ns', ns, 'qh', qh, 'q', ARGV[b + 2], 'r', ARGV[b + 3],
             'v', ARGV[b + 4], 'm', ARGV[b + 5], 'c', ARGV[b + 6], 'a', ARGV[b + 7],
             'n', ARGV[b + 8])
  redis.call('ZADD', P .. ':ids', id, m)
  redis.call('ZADD', P .. ':lru', ARGV[b + 7], m)
  redis.call('ZADD', P .. ':lru:' .. ns, ARGV[b + 7], m)
  redis.call('ZADD', P .. ':created', ARGV[b + 6], m)
  if ttl == '' then
    redis.call('ZREM', P .. ':exp', m)
    redis.call('ZREM', P .. ':exp:' .. ns, m)
    redis.call('ZREM', P .. ':reap', m)
  else
    redis.call('HSET', key, 't', ttl)
    redis.call('ZADD', P .. ':exp', expires, m)
    redis.call('ZADD', P .. ':exp:' .. ns, expires, m)
    if native then
      local at = now_ms + math.max(tonumber(ttl), 1) * 1000
      redis.call('PEXPIREAT', key, at)
      redis.call('ZADD', P .. ':reap', at, m)
    else
      redis.call('ZREM', P .. ':reap', m)
    end
  end
  out[#out + 1] = id
end
if count > 0 then redis.call('INCR', P .. ':version') end
return out

local P = ARGV[1]
local function pad(id) return string.format('%020d', tonumber(id)) end
local function unpad(m) local s = string.gsub(m, '^0+', '') return s end

-- Unlink an id from every structure (its entry key may already be gone).
-- Returns its namespace, or nil when the id is unknown.
local function remove_id(id)
  local loc = redis.call('HGET', P .. ':loc', id)
  if not loc then return nil end
  local l = cjson.decode(loc)
  local ns, qh = l[1], l[2]
  local m = pad(id)
  redis.call('DEL', P .. ':e:' .. id)
  redis.call('HDEL', P .. ':loc', id)
  if redis.call('HGET', P .. ':h:' .. ns, qh) == id then
    redis.call('HDEL', P .. ':h:' .. ns, qh)
  end
  for _, k in ipairs({':ids', ':lru', ':lru:' .. ns, ':created', ':exp', ':exp:' .. ns,
                      ':reap'}) do
    redis.call('ZREM', P .. k, m)
  end
  if redis.call('HINCRBY', P .. ':ns', ns, -1) <= 0 then
    redis.call('HDEL', P .. ':ns', ns)
  end
  return ns
end

-- Unlink the ids whose entry key Redis expired. Returns (unlinked in ns_filter or in
-- any namespace when it is nil, unlinked in all).
local function reap(ns_filter)
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local due = redis.call('ZRANGEBYSCORE', P .. ':reap', '-inf', '(' .. now_ms)
  local counted, gone = 0, 0
  for _, m in ipairs(due) do
    local id = unpad(m)
    if redis.call('EXISTS', P .. ':e:' .. id) == 0 then
      local ns = remove_id(id)
      if ns then
        gone = gone + 1
        if ns_filter == nil or ns == ns_filter then counted = counted + 1 end
      end
    end
  end
  return counted, gone
end

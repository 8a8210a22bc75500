-- ARGV: P. Unlinks the ids Redis expired; returns how many.
local _, gone = reap(nil)
if gone > 0 then redis.call('INCR', P .. ':version') end
return gone

-- uses: refresh_ttl.lua
-- KEYS[1] profile hash, KEYS[2] wishes hash, KEYS[3..] every key of the viewer (TTL)
-- ARGV field, value, field, value, ... of the new wishes (none: no wishes)
-- Returns 1, or 0 when the viewer has no profile (nothing is written).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[2])
if #ARGV > 0 then redis.call('HSET', KEYS[2], unpack(ARGV)) end
refresh_ttl()
return 1

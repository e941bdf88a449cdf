-- uses: refresh_ttl.lua
-- KEYS[1] profile hash, KEYS[2..] every key of the viewer (for the TTL)
-- ARGV field, value, field, value, ... of the new profile
-- Returns 1 when created, 0 when a profile with this id already exists (left untouched).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
refresh_ttl()
return 1

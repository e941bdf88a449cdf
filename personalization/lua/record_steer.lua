-- uses: refresh_ttl.lua
-- KEYS[1] profile hash, KEYS[2] steers list, KEYS[3..] every key of the viewer (for the TTL)
-- ARGV[1] steer text, ARGV[2] how many steers to keep
-- Returns 1, or 0 when the viewer has no profile (nothing is written).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
redis.call('HSET', KEYS[1], 'last_steer', ARGV[1])
refresh_ttl()
return 1

-- uses: refresh_ttl.lua
-- KEYS[1] profile hash, KEYS[2] steers list, KEYS[3..] every key of the viewer (for the TTL)
-- ARGV[1] steer text, ARGV[2] how many steers to keep, ARGV[3] when it was sent (unix ms)
-- Returns 1, or 0 when the viewer has no profile (nothing is written).
-- last_steer_ms only grows: it tells a replayed steer that landed already from one that did not.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
local last = tonumber(redis.call('HGET', KEYS[1], 'last_steer_ms') or '0')
redis.call('HSET', KEYS[1], 'last_steer', ARGV[1], 'last_steer_ms', math.max(last, tonumber(ARGV[3])))
refresh_ttl()
return 1

-- KEYS[1] the viewer's assignments hash, KEYS[2] the viewer's profile hash (for an anonymous viewer's TTL)
-- ARGV field, variation, field, variation, ... of the sticky-bucket document
-- Returns the number of fields written. A field already set is kept: two servers assigning the same viewer
-- at once agree on the first answer, and a stored assignment is never rewritten.
local written = 0
for i = 1, #ARGV, 2 do written = written + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) end
local ttl = tonumber(redis.call('HGET', KEYS[2], '{{TTL_FIELD}}') or '0')
if ttl and ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return written

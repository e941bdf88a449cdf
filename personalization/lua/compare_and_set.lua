-- KEYS[1] a string key. ARGV[1] the value it must hold now ("" : the key must be missing), ARGV[2] the new value.
-- Returns 1 if it was set, 0 if the key held something else (another writer came first).
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1

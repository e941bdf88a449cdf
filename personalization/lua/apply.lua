-- uses: refresh_ttl.lua, evidence.lua
-- KEYS: every key of the viewer (keys.viewer_keys), for the TTL: [1] profile hash, [2] events stream,
--   [4] affinity hash
-- ARGV[1] newest event id to apply ("+" for all), ARGV[2] most events to apply in this call
-- Returns the number of events applied (0 when all of them were applied before), or -1 when the
-- viewer has no profile.
-- Idempotent: only events with ids in (last_event_id, ARGV[1]] are applied, in stream order, and
-- last_event_id moves to the newest applied one in the same atomic script, so a retry, a replay, or
-- the consumer seeing an event the live session already applied changes nothing.
local p = redis.call('HMGET', KEYS[1], 'schema_version', 'last_event_id', 'n_applied', 'ttl_seconds')
if not p[1] then return -1 end
local reset = reset_outdated(KEYS[1], KEYS[4], p[1])
local entries = pending(KEYS[2], p[2] or '0-0', ARGV[1], tonumber(ARGV[2]), KEYS[4])
if #entries > 0 then
  redis.call('HSET', KEYS[1], 'last_event_id', entries[#entries][1], 'n_applied', (tonumber(p[3]) or 0) + #entries)
end
if #entries > 0 or reset then refresh_ttl(p[4] or '0') end  -- keys it created or rewrote get the TTL
return #entries

-- uses: refresh_ttl.lua, evidence.lua
-- KEYS: keys.viewer_keys of each viewer of the call, KEYS_PER_VIEWER keys each, in this order per
--   viewer: [1] profile hash, [2] events stream, [4] affinity hash (all of them for the TTL).
-- ARGV[1] ts (unix seconds), ARGV[2] approximate MAXLEN of the streams, ARGV[3] most events the call
--   may apply in all, then per viewer: "1" to apply its pending events after appending ("0": leave them
--   to the consumer), the number of events n, and 6 values per event: kind ("like" | "skip" | "dwell"),
--   segment_id or "", seconds or "", scene (compact JSON attr -> value) or "", context bucket or "", and
--   the event's own id (eid, chosen by the caller, so that a replay can tell whether it already landed).
-- Returns three values per viewer: events applied (-1: the viewer has no profile, nothing written),
--   1 if some of its events are left unapplied (0 if none), and its new stream ids joined by spaces.
-- XADD and the counters run in one script, so the counters always equal what the stream received;
-- the apply in the same script makes the events count before the caller hears back.
-- last_appended_id lets the apply skip re-reading the stream: when every event appended before
-- was applied already, the pending events are exactly the ones in ARGV.
local KEYS_PER_VIEWER, TTL_REFRESH_FRACTION = {{KEYS_PER_VIEWER}}, {{TTL_REFRESH_FRACTION}}
local TTL_REFRESHED = '{{TTL_REFRESHED_FIELD}}'

local function append_viewer(k, first, n, limit)
  local profile, stream, affinity = KEYS[k + 1], KEYS[k + 2], KEYS[k + 4]
  local p = redis.call('HMGET', profile, 'schema_version', 'last_event_id', 'n_applied', 'ttl_seconds',
    'last_appended_id', 'n_like', 'n_skip', 'n_dwell', 'dwell_seconds', TTL_REFRESHED)
  if not p[1] then return -1, 0, {} end
  local counts = {like = tonumber(p[6]) or 0, skip = tonumber(p[7]) or 0, dwell = tonumber(p[8]) or 0}
  local dwell_seconds = tonumber(p[9]) or 0
  local last = p[2] or '0-0'
  local caught_up = limit > 0 and p[5] and p[5] == last and n <= limit
  local reset = limit > 0 and reset_outdated(profile, affinity, p[1])
  local ids = {}
  for i = first, first + 6 * (n - 1), 6 do
    local kind, seconds = ARGV[i], ARGV[i + 2]
    ids[#ids + 1] = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[2], '*',
      'kind', kind, 'segment_id', ARGV[i + 1], 'seconds', seconds, 'ts', ARGV[1],
      'scene', ARGV[i + 3], 'context', ARGV[i + 4], 'eid', ARGV[i + 5])
    counts[kind] = counts[kind] + 1
    if kind == 'dwell' then dwell_seconds = dwell_seconds + tonumber(seconds) end
    if caught_up then add_evidence(affinity, kind, seconds, ARGV[i + 3], ARGV[i + 4]) end
  end
  local applied, newest = 0, last
  if caught_up then
    applied, newest = #ids, ids[#ids]
  elseif limit > 0 then
    local entries = pending(stream, last, '+', limit, affinity)
    applied = #entries
    if applied > 0 then newest = entries[applied][1] end
  end
  redis.call('HSET', profile, 'n_like', counts.like, 'n_skip', counts.skip, 'n_dwell', counts.dwell,
    'dwell_seconds', fmt(dwell_seconds), 'last_appended_id', ids[#ids], 'last_event_id', newest,
    'n_applied', (tonumber(p[3]) or 0) + applied)
  local ttl, now = tonumber(p[4]) or 0, tonumber(ARGV[1])
  if ttl > 0 then
    -- a key this call may have created (the stream, the affinity hash) gets the TTL at once;
    -- otherwise the expiry restarts once per TTL_REFRESH_FRACTION of the TTL
    local created = not p[5] or reset or (applied > 0 and (tonumber(p[3]) or 0) == 0)
    if created or now - (tonumber(p[10]) or 0) >= ttl * TTL_REFRESH_FRACTION then
      refresh_ttl(ttl, k + 1, k + KEYS_PER_VIEWER)
      redis.call('HSET', profile, TTL_REFRESHED, ARGV[1])
    end
  end
  return applied, newest ~= ids[#ids] and 1 or 0, ids
end

local out = {}
local budget = tonumber(ARGV[3])
local a = 4
for k = 0, #KEYS - 1, KEYS_PER_VIEWER do
  local n = tonumber(ARGV[a + 1])
  local limit = 0
  if ARGV[a] == '1' then limit = budget end
  local applied, left, ids = append_viewer(k, a + 2, n, limit)
  if applied > 0 then budget = budget - applied end
  out[#out + 1] = applied
  out[#out + 1] = left
  out[#out + 1] = table.concat(ids, ' ')
  a = a + 2 + 6 * n
end
return out

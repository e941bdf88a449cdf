-- uses: fmt.lua
-- KEYS[1] viewers hash, KEYS[2] stats hash, KEYS[3] seen set (all under the experiment's hash tag)
-- ARGV[1] viewer id, ARGV[2] variation id (used by 'expose'), ARGV[3] kind: expose | session | dwell | skip |
-- like | steer, ARGV[4] event id (a feedback event's stream id; any unique id for the others),
-- ARGV[5] value (dwell seconds; the covariate for 'expose'), ARGV[6] ts (unix seconds)
-- Returns {applied, total}: applied 1 when counted, 0 for a repeat (already exposed, or an event id seen
-- before), -1 for an event of a viewer not exposed; total = exposures in the experiment.
local COMPONENTS = {{COMPONENTS}}
local PRODUCTS = {{PRODUCTS}}
local RETURN_WINDOW = {{RETURN_WINDOW}}
-- a row is stored as 'variation exposed_at last_id c s w k l t r', numbers exact (%.17g)
local function decode(raw)
  local parts = {}
  for part in string.gmatch(raw, '%S+') do parts[#parts + 1] = part end
  local row = {v = parts[1], e = tonumber(parts[2]), last = parts[3]}
  for i, c in ipairs(COMPONENTS) do row[c] = tonumber(parts[3 + i]) end
  return row
end
local function encode(row)
  local parts = {row.v, fmt(row.e), row.last}
  for _, c in ipairs(COMPONENTS) do parts[#parts + 1] = fmt(row[c]) end
  return table.concat(parts, ' ')
end
local function stream_id(id)
  local ms, seq = string.match(id, '^(%d+)%-(%d+)$')
  if ms then return tonumber(ms), tonumber(seq) end
  return nil
end
local viewer, kind, id, ts = ARGV[1], ARGV[3], ARGV[4], tonumber(ARGV[6])
local raw = redis.call('HGET', KEYS[1], viewer)
local old, row
if kind == 'expose' then
  if raw then return {0, tonumber(redis.call('HGET', KEYS[2], 'total') or '0')} end
  row = {v = ARGV[2], e = ts, last = '0-0'}
  for _, c in ipairs(COMPONENTS) do row[c] = 0 end
  row.c = tonumber(ARGV[5]) or 0
  row.s = 1
  if id ~= '' then redis.call('SADD', KEYS[3], id) end
  redis.call('HINCRBY', KEYS[2], row.v .. '|n', 1)
  redis.call('HINCRBY', KEYS[2], 'total', 1)
else
  if not raw then return {-1, 0} end
  row = decode(raw)
  old = {}
  for _, c in ipairs(COMPONENTS) do old[c] = row[c] end
  local ms, seq = stream_id(id)
  if ms then
    local lms, lseq = stream_id(row.last)
    if ms < lms or (ms == lms and seq <= lseq) then return {0, 0} end
    row.last = id
  elseif redis.call('SADD', KEYS[3], id) == 0 then
    return {0, 0}
  end
  if kind == 'session' then
    row.s = row.s + 1
    if ts - row.e <= RETURN_WINDOW then row.r = 1 end
  elseif kind == 'dwell' then row.w = row.w + (tonumber(ARGV[5]) or 0)
  elseif kind == 'skip' then row.k = row.k + 1
  elseif kind == 'like' then row.l = row.l + 1
  elseif kind == 'steer' then row.t = row.t + 1
  end
end
local prefix = row.v .. '|'
local function was(c) if old then return old[c] else return 0 end end
for _, c in ipairs(COMPONENTS) do
  local a, b = was(c), row[c]
  if a ~= b then
    redis.call('HINCRBYFLOAT', KEYS[2], prefix .. 'S' .. c, fmt(b - a))
    redis.call('HINCRBYFLOAT', KEYS[2], prefix .. 'Q' .. c, fmt(b * b - a * a))
  end
end
for _, p in ipairs(PRODUCTS) do
  local before, after = was(p[1]) * was(p[2]), row[p[1]] * row[p[2]]
  if before ~= after then
    redis.call('HINCRBYFLOAT', KEYS[2], prefix .. 'P' .. p[1] .. p[2], fmt(after - before))
  end
end
redis.call('HSET', KEYS[1], viewer, encode(row))
return {1, tonumber(redis.call('HGET', KEYS[2], 'total') or '0')}

-- uses: fmt.lua, increments.lua
-- Shared by apply.lua and append.lua:
-- add_evidence(key, kind, seconds, scene, ctx): adds one event's increments to the cell of each
--   attribute value of its scene with HINCRBY (a cell holds a << CELL_SHIFT | b), moving a cell that grew
--   too big to its overflow fields (move_cell). Inside Redis every call, argument and string costs:
--   reading, parsing and formatting cells cost more than the HINCRBYs that replace them;
-- pending(stream, last, upto, limit, key): the entries of stream with ids in (last, upto], at most
--   limit, added to the affinity hash key; XRANGE compares ids as ms-seq pairs, so order is stream order;
-- reset_outdated(profile, affinity, version): a profile of an older layout (Pixelcast has never
--   released one) loses its evidence and takes the current version; true when it did.
local SCHEMA_VERSION = {{SCHEMA_VERSION}}
local CELL_ROOM, MOVE_AT, MOVE_B_AT = {{CELL_ROOM}}, {{CELL_MOVE_AT}}, {{CELL_MOVE_B_AT}}
local OVERFLOW_A, OVERFLOW_B = '{{OVERFLOW_A}}', '{{OVERFLOW_B}}'
local function move_cell(key, name, packed)
  local b = packed % CELL_ROOM
  redis.call('HINCRBY', key, name .. OVERFLOW_A, string.format('%d', (packed - b) / CELL_ROOM))
  redis.call('HINCRBY', key, name .. OVERFLOW_B, string.format('%d', b))
  redis.call('HSET', key, name, 0)
end
local function add_evidence(key, kind, seconds, scene, ctx)
  if not scene or scene == '' then return end
  local da, db = units(kind, seconds)
  local increment = string.format('%d', da * CELL_ROOM + db)
  local prefix = ''
  if ctx and ctx ~= '' then prefix = ctx .. '/' end
  for attr, value in pairs(cjson.decode(scene)) do
    local name = prefix .. attr .. '=' .. value
    local packed = redis.call('HINCRBY', key, name, increment)
    if packed >= MOVE_AT or packed % CELL_ROOM >= MOVE_B_AT then move_cell(key, name, packed) end
  end
end
local function pending(stream, last, upto, limit, key)
  local entries = redis.call('XRANGE', stream, '(' .. last, upto, 'COUNT', limit)
  for _, entry in ipairs(entries) do
    local f = {}
    local raw = entry[2]
    for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
    add_evidence(key, f['kind'], f['seconds'], f['scene'], f['context'])
  end
  return entries
end
local function reset_outdated(profile, affinity, version)
  if (tonumber(version) or SCHEMA_VERSION) >= SCHEMA_VERSION then return false end
  redis.call('DEL', affinity)
  redis.call('HSET', profile, 'schema_version', SCHEMA_VERSION)
  return true
end

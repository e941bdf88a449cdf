-- KEYS[1] a viewer's events stream. ARGV[1] the stream id to search from, ARGV[2..] event ids (eid).
-- Returns the eids of ARGV that some entry from ARGV[1] on carries: events that already landed. Reads
-- the stream in pages, so a long stream never builds one huge reply.
local wanted, found = {}, {}
for i = 2, #ARGV do wanted[ARGV[i]] = true end
local start = ARGV[1]
while true do
  local entries = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', 1000)
  for _, entry in ipairs(entries) do
    local raw = entry[2]
    for i = 1, #raw, 2 do
      if raw[i] == 'eid' and wanted[raw[i + 1]] then
        found[#found + 1] = raw[i + 1]
        wanted[raw[i + 1]] = nil
      end
    end
  end
  if #entries < 1000 then return found end
  start = '(' .. entries[#entries][1]
end

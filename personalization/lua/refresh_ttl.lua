-- refresh_ttl(ttl, first, last): restarts the expiry of KEYS[first..last] (default: all of KEYS,
-- KEYS[first] being the profile) when the viewer is anonymous: anonymous data lives for TTL seconds
-- after the viewer's last activity. A script that already read the profile's ttl field passes it
-- ("0" when absent) to save a call; a script serving several viewers passes each viewer's slice of KEYS.
local function refresh_ttl(ttl, first, last)
  first = first or 1
  ttl = tonumber(ttl or redis.call('HGET', KEYS[first], '{{TTL_FIELD}}') or '0')
  if ttl and ttl > 0 then
    for i = first, last or #KEYS do redis.call('EXPIRE', KEYS[i], ttl) end
  end
end

-- fmt(x): a number as the shortest of %.15g / %.17g that reads back exactly.
local function fmt(x)
  local s = string.format('%.15g', x)
  if tonumber(s) ~= x then s = string.format('%.17g', x) end
  return s
end

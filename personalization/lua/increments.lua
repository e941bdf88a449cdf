-- Lua twins of rewards.feedback_increments and rewards.evidence_units:
-- increments(kind, seconds) -> alpha and beta increments of one event;
-- units(kind, seconds) -> the same in whole thousandths (EVIDENCE_SCALE), as the cells count them.
local function increments(kind, seconds)
  if kind == 'like' then return {{LIKE_WEIGHT}}, 0 end
  if kind == 'skip' then return 0, {{SKIP_WEIGHT}} end
  if kind == 'dwell' then
    local f = math.min(math.max(tonumber(seconds) or 0, 0) / {{DWELL_FULL_SECONDS}}, 1)
    return {{DWELL_WEIGHT}} * f, {{DWELL_WEIGHT}} * (1 - f)
  end
  return 0, 0
end
local function units(kind, seconds)
  local da, db = increments(kind, seconds)
  local a = math.floor(da * {{EVIDENCE_SCALE}} + 0.5)
  return a, math.floor((da + db) * {{EVIDENCE_SCALE}} + 0.5) - a
end

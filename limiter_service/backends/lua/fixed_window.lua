-- Fixed window, windows aligned to the Redis clock: a hit fits when the window's count plus
-- its cost stays within the limit. State: s = window start (us), n = units counted in it.
-- Takes the state's fields (nil when the key is new) after the hit's numbers. Returns
-- allowed (0/1), remaining, reset_after_us, retry_after_us, then, when the hit consumes, how
-- long the new state must live (us) and its fields.
local fmod, floor, ceil, max = math.fmod, math.floor, math.ceil, math.max
local function fixed_window(now, limit, window, cost, dry, s, n)
  local start = now - fmod(now, window)
  local finish = start + window
  if s ~= start then n = 0 end
  if n + cost <= limit then
    if dry then return 1, limit - n - cost, finish - now, 0 end
    n = n + cost
    return 1, limit - n, finish - now, 0, finish - now, start, n
  end
  local reset = 0
  if n > 0 then reset = finish - now end
  return 0, max(0, limit - n), reset, finish - now
end

-- Fixed window, windows aligned to the Redis clock: a hit fits when the window's count plus
-- its cost stays within the limit. State: s = window start (us), n = units counted in it.
-- Returns allowed (0/1), remaining, reset_after_us, retry_after_us, then, when the hit
-- consumes, the new state and how long it must live (us).
local function fixed_window(st, now, limit, window, cost, dry)
  local start = now - math.fmod(now, window)
  local finish = start + window
  local n = 0
  if st.s == start then n = st.n end
  if n + cost <= limit then
    if dry then return 1, limit - n - cost, finish - now, 0 end
    n = n + cost
    return 1, limit - n, finish - now, 0, {s = start, n = n}, finish - now
  end
  local reset = 0
  if n > 0 then reset = finish - now end
  return 0, math.max(0, limit - n), reset, finish - now
end

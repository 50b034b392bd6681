-- Sliding window approximated by two fixed windows: the previous window's count weighs in
-- proportionally to how much of it still overlaps the sliding window.
-- State: s = current window start (us), c = its count, p = the previous window's count.
-- Returns as fixed_window does; the state lives two windows from the window start.
local function sliding_window(st, now, limit, window, cost, dry)
  local start = now - math.fmod(now, window)
  local elapsed = now - start
  local cur, prev = 0, 0
  if st.s == start then
    cur, prev = st.c, st.p
  elseif st.s == start - window then
    prev = st.c
  end
  local estimate = prev * (window - elapsed) / window + cur
  if estimate + cost <= limit then
    local new = nil
    if not dry then new = {s = start, c = cur + cost, p = prev} end
    local full_reset = 2 * window - elapsed
    return 1, math.floor(limit - (estimate + cost)), full_reset, 0, new, full_reset
  end
  local reset = 0
  if cur > 0 then
    reset = 2 * window - elapsed
  elseif prev > 0 then
    reset = window - elapsed
  end
  local retry
  if cur + cost <= limit then
    -- The previous window decays enough within this window.
    retry = math.max(1, math.ceil(window - elapsed - (limit - cur - cost) * window / prev))
  elseif cur > 0 then
    -- This window's count must itself decay, during the next window.
    retry = (window - elapsed) + math.max(0, math.ceil(window - (limit - cost) * window / cur))
  else
    -- A cost above the limit never fits: until both windows' counts are gone.
    retry = 2 * window - elapsed
  end
  return 0, math.max(0, math.floor(limit - estimate)), reset, retry
end

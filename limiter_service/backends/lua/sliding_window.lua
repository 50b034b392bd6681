-- Sliding window approximated by two fixed windows: the previous window's count weighs in
-- proportionally to how much of it still overlaps the sliding window.
-- State: s = current window start (us), c = its count, p = the previous window's count.
-- Takes and returns as fixed_window does; the state lives two windows from the window start.
local function sliding_window(now, limit, window, cost, dry, s, c, p)
  local start = now - fmod(now, window)
  local elapsed = now - start
  local cur, prev = 0, 0
  if s == start then
    cur, prev = c, p
  elseif s == start - window then
    prev = c
  end
  local estimate = prev * (window - elapsed) / window + cur
  if estimate + cost <= limit then
    local full_reset = 2 * window - elapsed
    local remaining = floor(limit - (estimate + cost))
    if dry then return 1, remaining, full_reset, 0 end
    return 1, remaining, full_reset, 0, full_reset, start, cur + cost, prev
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
    retry = max(1, ceil(window - elapsed - (limit - cur - cost) * window / prev))
  elseif cur > 0 then
    -- This window's count must itself decay, during the next window.
    retry = (window - elapsed) + max(0, ceil(window - (limit - cost) * window / cur))
  else
    -- A cost above the limit never fits: until both windows' counts are gone.
    retry = 2 * window - elapsed
  end
  return 0, max(0, floor(limit - estimate)), reset, retry
end

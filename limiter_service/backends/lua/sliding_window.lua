-- Sliding window approximated by two fixed windows: the previous window's count weighs in
-- proportionally to how much of it still overlaps the sliding window. Decides every item of a
-- batch in order.
-- KEYS[i]: the limit's hash (s = current window start in us, c = its count, p = previous count).
-- ARGV, 4 per item: limit, window_us, cost, dry_run (0/1).
-- Returns 4 integers per item: allowed (0/1), remaining, reset_after_us, retry_after_us.
-- Denied requests write nothing; a write keeps the key for two windows from the window start.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i = 1, #KEYS do
  local base = (i - 1) * 4
  local limit = tonumber(ARGV[base + 1])
  local window = tonumber(ARGV[base + 2])
  local cost = tonumber(ARGV[base + 3])
  local dry = ARGV[base + 4] == '1'
  local start = now - math.fmod(now, window)
  local elapsed = now - start
  local state = redis.call('HMGET', KEYS[i], 's', 'c', 'p')
  local stored = tonumber(state[1])
  local cur, prev = 0, 0
  if stored == start then
    cur, prev = tonumber(state[2]), tonumber(state[3])
  elseif stored == start - window then
    prev = tonumber(state[2])
  end
  local estimate = prev * (window - elapsed) / window + cur
  if estimate + cost <= limit then
    if not dry then
      redis.call('HSET', KEYS[i], 's', string.format('%.0f', start), 'c', cur + cost, 'p', prev)
      redis.call('PEXPIRE', KEYS[i], math.ceil((2 * window - elapsed) / 1000))
    end
    out[#out + 1] = 1
    out[#out + 1] = math.floor(limit - (estimate + cost))
    out[#out + 1] = 2 * window - elapsed
    out[#out + 1] = 0
  else
    out[#out + 1] = 0
    out[#out + 1] = math.max(0, math.floor(limit - estimate))
    if cur > 0 then
      out[#out + 1] = 2 * window - elapsed
    elseif prev > 0 then
      out[#out + 1] = window - elapsed
    else
      out[#out + 1] = 0
    end
    if cur + cost <= limit then
      -- The previous window decays enough within this window.
      out[#out + 1] = math.max(1, math.ceil(window - elapsed - (limit - cur - cost) * window / prev))
    else
      -- This window's count must itself decay, during the next window.
      out[#out + 1] = (window - elapsed) + math.max(0, math.ceil(window - (limit - cost) * window / cur))
    end
  end
end
return out

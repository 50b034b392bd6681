-- Fixed window, windows aligned to the Redis clock. Decides every item of a batch in order.
-- KEYS[i]: the limit's hash (fields s = window start in us, n = units counted in it).
-- ARGV, 4 per item: limit, window_us, cost, dry_run (0/1).
-- Returns 4 integers per item: allowed (0/1), remaining, reset_after_us, retry_after_us.
-- Denied requests write nothing; every write refreshes the key's TTL to the window's end.
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
  local finish = start + window
  local state = redis.call('HMGET', KEYS[i], 's', 'n')
  local n = 0
  if tonumber(state[1]) == start then n = tonumber(state[2]) end
  if n + cost <= limit then
    if not dry then
      n = n + cost
      redis.call('HSET', KEYS[i], 's', string.format('%.0f', start), 'n', n)
      redis.call('PEXPIRE', KEYS[i], math.ceil((finish - now) / 1000))
      out[#out + 1] = 1
      out[#out + 1] = limit - n
    else
      out[#out + 1] = 1
      out[#out + 1] = limit - n - cost
    end
    out[#out + 1] = finish - now
    out[#out + 1] = 0
  else
    out[#out + 1] = 0
    out[#out + 1] = math.max(0, limit - n)
    if n > 0 then out[#out + 1] = finish - now else out[#out + 1] = 0 end
    out[#out + 1] = finish - now
  end
end
return out

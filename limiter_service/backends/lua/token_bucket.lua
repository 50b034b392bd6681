-- Token bucket as GCRA: the key holds the theoretical arrival time (TAT, us) of the next unit.
-- Decides every item of a batch in order.
-- KEYS[i]: the limit's hash (t = TAT in us on the Redis clock).
-- ARGV, 4 per item: emission_interval_us, tolerance_us (interval * burst), cost, dry_run (0/1).
-- Returns 4 integers per item: allowed (0/1), remaining, reset_after_us, retry_after_us.
-- Denied requests write nothing; a write keeps the key until the bucket is full again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function floor_div(a, b)
  if a <= 0 then return 0 end
  return (a - math.fmod(a, b)) / b
end
local out = {}
for i = 1, #KEYS do
  local base = (i - 1) * 4
  local interval = tonumber(ARGV[base + 1])
  local tolerance = tonumber(ARGV[base + 2])
  local cost = tonumber(ARGV[base + 3])
  local dry = ARGV[base + 4] == '1'
  local tat = tonumber(redis.call('HGET', KEYS[i], 't')) or now
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  if new_tat - now <= tolerance then
    if not dry then
      redis.call('HSET', KEYS[i], 't', string.format('%.0f', new_tat))
      redis.call('PEXPIRE', KEYS[i], math.ceil((new_tat - now) / 1000))
    end
    out[#out + 1] = 1
    out[#out + 1] = floor_div(tolerance - (new_tat - now), interval)
    out[#out + 1] = new_tat - now
    out[#out + 1] = 0
  else
    out[#out + 1] = 0
    out[#out + 1] = floor_div(tolerance - (tat - now), interval)
    out[#out + 1] = tat - now
    out[#out + 1] = new_tat - tolerance - now
  end
end
return out

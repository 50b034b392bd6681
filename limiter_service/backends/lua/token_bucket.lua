-- Token bucket as GCRA: the state holds the theoretical arrival time (t = TAT, us on the
-- Redis clock) of the next unit. Takes the emission interval and the tolerance (interval *
-- burst) in us. Takes and returns as fixed_window does; the state lives until the bucket
-- is full.
local function floor_div(a, b)
  if a <= 0 then return 0 end
  return (a - fmod(a, b)) / b
end
local function token_bucket(now, interval, tolerance, cost, dry, t)
  local tat = t or now
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  if new_tat - now <= tolerance then
    local remaining = floor_div(tolerance - (new_tat - now), interval)
    if dry then return 1, remaining, new_tat - now, 0 end
    return 1, remaining, new_tat - now, 0, new_tat - now, new_tat
  end
  return 0, floor_div(tolerance - (tat - now), interval), tat - now, new_tat - tolerance - now
end

-- Decides a batch of hits of any algorithm, in order, in one atomic run. The functions it
-- calls are defined above it (fixed_window.lua, sliding_window.lua, token_bucket.lua).
-- KEYS[i]: hit i's counter (a hash).
-- ARGV, 6 per hit: algorithm (1 fixed_window, 2 sliding_window, 3 token_bucket), the
-- policy's two numbers (limit and window in us; token bucket: emission interval and
-- tolerance in us), cost, flags (1: dry run; 2: shadow, its denial does not block its
-- group; 4: probe, decide but write nothing), group (0: on its own; adjacent hits that
-- share another group are all-or-nothing).
-- Returns 4 integers per hit: allowed (0/1), remaining, reset_after_us, retry_after_us.
-- Each hit sees the state the earlier hits left; a run (one hit, or one group) is decided
-- on tentative state, which is kept only if no hit of the run blocks (a denial without the
-- shadow flag) and the run is no probe. Denied runs write nothing; every write refreshes
-- its key's TTL to when the state stops mattering.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local steps = {fixed_window, sliding_window, token_bucket}
local names = {{'s', 'n'}, {'s', 'c', 'p'}, {'t'}}
local committed = {}
local function load(key, algorithm)
  local st = committed[key]
  if st == nil then
    local fields = names[algorithm]
    local values = redis.call('HMGET', key, unpack(fields))
    st = {}
    for j = 1, #fields do st[fields[j]] = tonumber(values[j]) end
    committed[key] = st
  end
  return st
end
local out, writes = {}, {}
local count = #KEYS
local first = 1
while first <= count do
  local group = ARGV[first * 6]
  local last = first
  if group ~= '0' then
    while last < count and ARGV[(last + 1) * 6] == group do last = last + 1 end
  end
  local tentative, ttls, keep = {}, {}, true
  for i = first, last do
    local base = (i - 1) * 6
    local algorithm = tonumber(ARGV[base + 1])
    local flags = tonumber(ARGV[base + 5])
    local key = KEYS[i]
    local allowed, remaining, reset, retry, new, ttl = steps[algorithm](
      tentative[key] or load(key, algorithm), now, tonumber(ARGV[base + 2]),
      tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4]), flags % 2 == 1)
    out[#out + 1] = allowed
    out[#out + 1] = remaining
    out[#out + 1] = reset
    out[#out + 1] = retry
    if new then
      tentative[key] = new
      ttls[key] = ttl
    end
    if allowed == 0 and math.floor(flags / 2) % 2 == 0 then keep = false end
    if flags >= 4 then keep = false end
  end
  if keep then
    for key, ttl in pairs(ttls) do
      committed[key] = tentative[key]
      writes[key] = ttl
    end
  end
  first = last + 1
end
for key, ttl in pairs(writes) do
  local args = {}
  for name, value in pairs(committed[key]) do
    args[#args + 1] = name
    args[#args + 1] = string.format('%.0f', value)
  end
  redis.call('HSET', key, unpack(args))
  redis.call('PEXPIRE', key, math.ceil(ttl / 1000))
end
return out

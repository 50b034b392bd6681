-- Decides a batch of hits of any algorithm, in order, in one atomic run. The functions it
-- calls are defined above it (fixed_window.lua, sliding_window.lua, token_bucket.lua).
-- KEYS[i]: hit i's counter (a hash, holding one algorithm's state).
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
-- Cost per hit matters (a flood of big batches holds Redis for their whole run): a hit on
-- its own (group 0) is decided on the committed state in place, no table is built per
-- hit, a key's state is read once per run, and each written key gets one HSET and one
-- PEXPIRE at the end.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local steps = {['1'] = fixed_window, ['2'] = sliding_window, ['3'] = token_bucket}
local format = string.format
-- committed[key]: the key's state as kept so far, its fields in the order of its
-- algorithm's comment; ttls[key]: its latest write's TTL (us); written[j], kinds[j]: the
-- keys with a write, in order, and their algorithms.
local committed, ttls, written, kinds = {}, {}, {}, {}
local function load(key, algorithm)
  local st
  if algorithm == '1' then
    st = redis.call('HMGET', key, 's', 'n')
  elseif algorithm == '2' then
    st = redis.call('HMGET', key, 's', 'c', 'p')
  else
    st = redis.call('HMGET', key, 't')
  end
  st[1], st[2], st[3] = tonumber(st[1]), tonumber(st[2]), tonumber(st[3])
  committed[key] = st
  return st
end
-- A batch repeats its policies' numbers: each string is converted once, and the numbers
-- are read as `numbers[s] or number(s)` (a function call only the first time).
local numbers = {}
local function number(s)
  local v = tonumber(s)
  numbers[s] = v
  return v
end
local function commit(key, algorithm, ttl)
  if not ttls[key] then
    written[#written + 1] = key
    kinds[#written] = algorithm
  end
  ttls[key] = ttl
end
local out = {}
local o = 0
local count = #KEYS
local first = 1
while first <= count do
  local base = first * 6 - 6
  local group = ARGV[base + 6]
  if group == '0' then
    -- On its own: decided on the committed state, kept unless the hit is a probe.
    local key, algorithm = KEYS[first], ARGV[base + 1]
    local one, two, cost, flags = ARGV[base + 2], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
    one, two = numbers[one] or number(one), numbers[two] or number(two)
    cost, flags = numbers[cost] or number(cost), numbers[flags] or number(flags)
    local st = committed[key] or load(key, algorithm)
    local allowed, remaining, reset, retry, ttl, x, y, z = steps[algorithm](
      now, one, two, cost, flags % 2 == 1, st[1], st[2], st[3])
    out[o + 1], out[o + 2], out[o + 3], out[o + 4] = allowed, remaining, reset, retry
    o = o + 4
    if ttl and flags < 4 then
      st[1], st[2], st[3] = x, y, z
      commit(key, algorithm, ttl)
    end
    first = first + 1
  else
    local last = first
    while last < count and ARGV[last * 6 + 6] == group do last = last + 1 end
    -- tentative[key]: the run's state of key; changed: its keys with a tentative write,
    -- pending[key] their latest TTL.
    local tentative, changed, pending, keep = {}, {}, {}, true
    for i = first, last do
      base = i * 6 - 6
      local key, algorithm = KEYS[i], ARGV[base + 1]
      local one, two, cost, flags = ARGV[base + 2], ARGV[base + 3], ARGV[base + 4], ARGV[base + 5]
      one, two = numbers[one] or number(one), numbers[two] or number(two)
      cost, flags = numbers[cost] or number(cost), numbers[flags] or number(flags)
      local st = tentative[key] or committed[key] or load(key, algorithm)
      local allowed, remaining, reset, retry, ttl, x, y, z = steps[algorithm](
        now, one, two, cost, flags % 2 == 1, st[1], st[2], st[3])
      out[o + 1], out[o + 2], out[o + 3], out[o + 4] = allowed, remaining, reset, retry
      o = o + 4
      if ttl then
        if not pending[key] then
          tentative[key] = {x, y, z, algorithm}
          changed[#changed + 1] = key
        else
          st[1], st[2], st[3] = x, y, z
        end
        pending[key] = ttl
      end
      if allowed == 0 and flags % 4 < 2 then keep = false end
      if flags >= 4 then keep = false end
    end
    if keep then
      for j = 1, #changed do
        local key = changed[j]
        local st, new = committed[key], tentative[key]
        st[1], st[2], st[3] = new[1], new[2], new[3]
        commit(key, new[4], pending[key])
      end
    end
    first = last + 1
  end
end
for j = 1, #written do
  local key, algorithm = written[j], kinds[j]
  local st = committed[key]
  if algorithm == '1' then
    redis.call('HSET', key, 's', format('%.0f', st[1]), 'n', format('%.0f', st[2]))
  elseif algorithm == '2' then
    redis.call('HSET', key, 's', format('%.0f', st[1]), 'c', format('%.0f', st[2]),
      'p', format('%.0f', st[3]))
  else
    redis.call('HSET', key, 't', format('%.0f', st[1]))
  end
  redis.call('PEXPIRE', key, math.ceil(ttls[key] / 1000))
end
return out

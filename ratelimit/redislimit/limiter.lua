-- One key's quota, as a GCRA (generic cell rate algorithm) per window, in
-- one hash. Every time is in microseconds on the server's clock (TIME).
--
-- KEYS[1]  the key's hash
-- ARGV[1]  'reserve', 'pause' or 'learn'
--
-- Fields:
--   w<interval>:<tolerance>  a window's theoretical arrival time (TAT)
--   p                        no request before this time (a pause)
--   le, lb, lt               the announced limit: interval, tolerance, TAT
--   lu, la                   when it ends, when it was stored
--
-- A window with interval e (period / rate) and tolerance tau
-- (e * (burst - 1)) lets a request go at time a when a >= TAT - tau; the
-- request then sets TAT to max(TAT, a) + e.

local key = KEYS[1]
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function num(v)
  return string.format('%.0f', v)
end

-- keep makes the hash live at least ms milliseconds more.
local function keep(ms)
  local cur = redis.call('PTTL', key)
  if cur < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

if op == 'reserve' then
  -- ARGV[2] how long from now the request goes at the soonest; ARGV[3]
  -- the longest delay that may be reserved; ARGV[4] the number of windows
  -- n; then n pairs interval, tolerance, the shortest window first.
  local maxw = tonumber(ARGV[3])
  local n = tonumber(ARGV[4])
  local fields = {'p', 'le', 'lb', 'lt', 'lu'}
  for i = 1, n do
    fields[5 + i] = 'w' .. ARGV[3 + 2 * i] .. ':' .. ARGV[4 + 2 * i]
  end
  local v = redis.call('HMGET', key, unpack(fields))
  local p = tonumber(v[1]) or 0
  local from = now + tonumber(ARGV[2])
  local at = math.max(from, p)
  local tats = {}
  for i = 1, n do
    local tau = tonumber(ARGV[4 + 2 * i])
    local tat = tonumber(v[5 + i]) or 0
    -- After a pause the shortest window starts with nothing saved up.
    if i == 1 and p > 0 and tat < p + tau then
      tat = p + tau
    end
    at = math.max(at, tat - tau)
    tats[i] = tat
  end
  local le = tonumber(v[2])
  local lu = tonumber(v[5]) or 0
  local lb, lt
  local learned = le ~= nil and lu > now
  if learned then
    lb = tonumber(v[3]) or 0
    lt = tonumber(v[4]) or 0
    if p > 0 and lt < p + lb then
      lt = p + lb
    end
    at = math.max(at, lt - lb)
  end
  local delay = at - now
  if delay > maxw then
    return {0, delay}
  end
  -- Each window counts the request from when it may go at the soonest, as
  -- independent token buckets do (golang.org/x/time/rate's): one window's
  -- wait does not push the others' schedules, so that a turn given up
  -- (its waiter decides again) costs them one interval, not the wait.
  local set = {}
  local life = 0
  for i = 1, n do
    local tat = math.max(tats[i], from) + tonumber(ARGV[3 + 2 * i])
    set[#set + 1] = fields[5 + i]
    set[#set + 1] = num(tat)
    life = math.max(life, tat - now)
  end
  if learned then
    lt = math.max(lt, from) + le
    set[#set + 1] = 'lt'
    set[#set + 1] = num(lt)
    life = math.max(life, lu - now)
  end
  redis.call('HSET', key, unpack(set))
  keep(math.ceil(math.max(life, p - now) / 1000) + 1000)
  return {1, delay}
end

if op == 'pause' then
  -- ARGV[2] the pause.
  local p = now + tonumber(ARGV[2])
  local cur = tonumber(redis.call('HGET', key, 'p')) or 0
  if p > cur then
    redis.call('HSET', key, 'p', num(p))
  end
  keep(math.ceil(tonumber(ARGV[2]) / 1000) + 1000)
  return 1
end

-- convert returns the TAT at a new interval e and tolerance tau of a window
-- whose TAT was lt at interval le and tolerance lb, keeping its tokens (what
-- it saved up, or owes to the requests it reserved), as a token bucket whose
-- rate changes does.
local function convert(lt, le, lb, e, tau)
  local burst = lb / le + 1
  local newburst = tau / e + 1
  local tokens = math.min(burst - math.max(lt - now, 0) / le, newburst)
  return now + (newburst - tokens) * e
end

if op == 'learn' then
  -- ARGV[2] interval, ARGV[3] tolerance, ARGV[4] how long it holds,
  -- ARGV[5] how long the request that announced it was in flight.
  local e = tonumber(ARGV[2])
  local tau = tonumber(ARGV[3])
  local valid = tonumber(ARGV[4])
  local inflight = tonumber(ARGV[5])
  local v = redis.call('HMGET', key, 'le', 'lb', 'lt', 'lu', 'la')
  local le = tonumber(v[1])
  local lu = tonumber(v[4]) or 0
  local la = tonumber(v[5]) or 0
  local inforce = le ~= nil and lu > now
  if inforce and now - la < inflight then
    -- In flight together with the announcement in force: the lowest
    -- remaining budget (the longest interval) wins.
    if e > le then
      local lt = convert(tonumber(v[3]) or 0, le, tonumber(v[2]) or 0, e, tau)
      redis.call('HSET', key, 'le', num(e), 'lb', num(tau), 'lt', num(lt), 'lu', num(math.max(lu, now + valid)))
      keep(math.ceil(valid / 1000) + 1000)
      return 1
    end
    return 0
  end
  if inforce and e * 10 >= le * 9 and e * 10 <= le * 11 then
    -- About the same rate: it holds longer.
    redis.call('HSET', key, 'lu', num(now + valid), 'la', num(now))
    keep(math.ceil(valid / 1000) + 1000)
    return 1
  end
  -- A later announcement replaces the one in force. A lower rate keeps
  -- what it saved up or owes; a higher one starts afresh with nothing
  -- saved up, as a first one does (the waiters decide again).
  local start = now + tau + e
  if inforce and e > le then
    start = convert(tonumber(v[3]) or 0, le, tonumber(v[2]) or 0, e, tau)
  end
  redis.call('HSET', key, 'le', num(e), 'lb', num(tau), 'lt', num(start), 'lu', num(now + valid), 'la', num(now))
  keep(math.ceil(math.max(valid, start - now) / 1000) + 1000)
  return 1
end

return redis.error_reply('ratelimit: unknown operation ' .. tostring(op))

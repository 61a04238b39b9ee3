-- One sync of one breaker: add a replica's counts to the shared rolling
-- window, publish its local open period, judge the window, and return the
-- shared open period.
--
-- KEYS[1]  hash of counts: field s<bucket> / f<bucket> = successes / failures
-- KEYS[2]  open flag; its TTL is the remaining open time
-- ARGV[1]  successes since the replica's last sync
-- ARGV[2]  failures since the replica's last sync
-- ARGV[3]  bucket length in milliseconds
-- ARGV[4]  number of buckets in the window
-- ARGV[5]  minimum calls in the window to trip (0: never trip on shared counts)
-- ARGV[6]  failure ratio to trip
-- ARGV[7]  open duration in milliseconds
-- ARGV[8]  remaining local open time of the replica in milliseconds (0: not open)
--
-- Returns {remaining shared open time in ms (<= 0: not open), successes, failures}.
-- Time is the server's (TIME), so replicas' clocks never disagree.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local bms = tonumber(ARGV[3])
local n = tonumber(ARGV[4])
local bucket = math.floor(now / bms)

local ds, df = tonumber(ARGV[1]), tonumber(ARGV[2])
if ds > 0 then redis.call('HINCRBY', KEYS[1], 's' .. bucket, ds) end
if df > 0 then redis.call('HINCRBY', KEYS[1], 'f' .. bucket, df) end

local lo = tonumber(ARGV[8])
if lo > 0 and redis.call('PTTL', KEYS[2]) < lo then
  redis.call('SET', KEYS[2], 'replica', 'PX', lo)
end

local s, f = 0, 0
local h = redis.call('HGETALL', KEYS[1])
for i = 1, #h, 2 do
  local b = tonumber(string.sub(h[i], 2))
  if b <= bucket - n then
    redis.call('HDEL', KEYS[1], h[i])
  elseif string.sub(h[i], 1, 1) == 's' then
    s = s + tonumber(h[i + 1])
  else
    f = f + tonumber(h[i + 1])
  end
end
if #h > 0 then redis.call('PEXPIRE', KEYS[1], bms * (n + 1)) end

local minCalls = tonumber(ARGV[5])
if minCalls > 0 and s + f >= minCalls and f >= tonumber(ARGV[6]) * (s + f) - 1e-9
    and redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], 'window', 'PX', ARGV[7])
  redis.call('DEL', KEYS[1])
  s, f = 0, 0
end
return {redis.call('PTTL', KEYS[2]), s, f}

package redisstore

// The Lua scripts. Each touches exactly one key (KEYS[1]), so that the store
// works on Redis Cluster. Time is in the key's expiry, which Redis sets and
// keeps on its own clock (record.go); the one script that reads the clock,
// completeLua, also writes the completed record's expiry into it. A script
// that finds a hash under the key (a record of the store's earlier format,
// "legacy" below) fails with WRONGTYPE before it wrote anything, and the
// store runs the legacy script of the operation instead.

// claimLua claims KEYS[1] when it is free, or held by a claim whose lease
// ran out (its PTTL is at most its abandoned-claim retention) with the same
// fingerprint. ARGV: the new record, its PTTL in ms (lease + abandoned
// retention), the fingerprint. Returns 1 when taken, else {record, PTTL}.
// The store's Claim sends SET NX GET instead, and runs this script only
// when that finds another claim in progress (to read its lease, and take it
// over if it expired), or on a Redis older than 7.0.
const claimLua = `
local v = redis.call('GET', KEYS[1])
if v then
  local pttl = redis.call('PTTL', KEYS[1])
  if string.byte(v, 1) ~= 49 or pttl < 0 then return {v, pttl} end
  local ab = tonumber(string.sub(v, 18, 33), 16)
  if not ab or pttl > ab or string.sub(v, 36) ~= ARGV[3] then return {v, pttl} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
`

// renewLua: ARGV the holder's prefix (status and token), lease ms. Returns 1
// or 0.
const renewLua = `
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 17) ~= ARGV[1] then return 0 end
local ab = tonumber(string.sub(v, 18, 33), 16)
if not ab then return 0 end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + ab)
return 1
`

// completeLua: ARGV the holder's prefix, response, retention ms. Returns 1
// or 0. The completed record keeps the token and the fingerprint, and
// carries its expiry, read from the server's clock (TIME: before Redis 5 a
// script that reads it and then writes must replicate its effects), so
// that a replay reads no PTTL.
const completeLua = `
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 17) ~= ARGV[1] then return 0 end
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3])
redis.call('SET', KEYS[1], '2' .. string.sub(v, 2, 17) .. string.format('%016x', at) .. string.sub(v, 34) .. ARGV[2], 'PX', ARGV[3])
return 1
`

// releaseLua: ARGV the holder's prefix. Returns 1 or 0.
const releaseLua = `
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 17) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

// forceReleaseLua deletes an in-progress record whatever its token.
// Returns 1 or 0.
const forceReleaseLua = `
local v = redis.call('GET', KEYS[1])
if not v or string.byte(v, 1) ~= 49 then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

// The legacy scripts serve the records of the store's earlier format until
// they expire (at most the retention after an upgrade): a hash of
//
//	f  fingerprint
//	s  status: 1 in progress, 2 completed
//	t  fencing token, a decimal string compared as a string
//	l  end of the lease, server time in Unix milliseconds
//	e  end of retention (completed records), Unix milliseconds
//	r  response (completed records)
//
// kept by key expiry as well. A legacy record is never written anew: a
// claim that takes one over writes a record of the current format.

// legacyClockLua defines now(), the server time in milliseconds. Before
// Redis 5, a script that reads TIME and then writes must replicate its
// effects.
const legacyClockLua = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// legacyTTLLua defines ttl(h, t): what is left, in milliseconds at server
// time t, of the lease (in progress) or the retention (completed) of the
// record whose fields f, s, t, l, e, r are h.
const legacyTTLLua = `
local function ttl(h, t)
  local until_ = h[2] == '1' and h[4] or h[5]
  local left = (tonumber(until_) or 0) - t
  if left < 0 then left = 0 end
  return string.format('%d', left)
end
`

// legacyClaimLua: ARGV as claimLua's. Returns {1} when taken (the key
// then holds a record of the current format), {2} when the key holds a
// record of the current format (claimLua decides), else {0, f, s, t, ttl,
// r}.
const legacyClaimLua = legacyClockLua + legacyTTLLua + `
local ty = redis.call('TYPE', KEYS[1]).ok
if ty == 'string' then return {2} end
if ty == 'hash' then
  local h = redis.call('HMGET', KEYS[1], 'f', 's', 't', 'l', 'e', 'r')
  local t = now()
  if h[2] then
    local takeover = h[2] == '1' and tonumber(h[4]) <= t and h[1] == ARGV[3]
    if not takeover then
      return {0, h[1], h[2], h[3], ttl(h, t), h[6] or ''}
    end
  end
  redis.call('DEL', KEYS[1])
elseif ty ~= 'none' then
  return redis.error_reply('WRONGTYPE the record is neither a string nor a hash')
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1}
`

// legacyGetLua returns {f, s, t, ttl, r}, or {} when there is no record.
const legacyGetLua = legacyClockLua + legacyTTLLua + `
local h = redis.call('HMGET', KEYS[1], 'f', 's', 't', 'l', 'e', 'r')
if not h[2] then return {} end
return {h[1], h[2], h[3], ttl(h, now()), h[6] or ''}
`

// legacyRenewLua: ARGV token, lease ms, abandoned-retention ms. Returns 1
// or 0.
const legacyRenewLua = legacyClockLua + `
local h = redis.call('HMGET', KEYS[1], 's', 't')
if h[1] ~= '1' or h[2] ~= ARGV[1] then return 0 end
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'l', string.format('%d', now() + lease))
redis.call('PEXPIRE', KEYS[1], lease + tonumber(ARGV[3]))
return 1
`

// legacyCompleteLua: ARGV token, response, retention ms. Returns 1 or 0.
const legacyCompleteLua = legacyClockLua + `
local h = redis.call('HMGET', KEYS[1], 's', 't')
if h[1] ~= '1' or h[2] ~= ARGV[1] then return 0 end
local ret = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 's', '2', 'r', ARGV[2], 'e', string.format('%d', now() + ret), 'l', '0')
redis.call('PEXPIRE', KEYS[1], ret)
return 1
`

// legacyReleaseLua: ARGV token. Returns 1 or 0.
const legacyReleaseLua = `
local h = redis.call('HMGET', KEYS[1], 's', 't')
if h[1] ~= '1' or h[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

// legacyForceReleaseLua deletes an in-progress record whatever its token.
const legacyForceReleaseLua = `
if redis.call('HGET', KEYS[1], 's') ~= '1' then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

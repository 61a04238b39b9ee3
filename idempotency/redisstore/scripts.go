package redisstore

// The Lua scripts, one per operation. Each touches exactly one key (KEYS[1]),
// so that the store works on Redis Cluster. A record is a hash:
//
//	f  fingerprint
//	s  status: 1 in progress, 2 completed
//	t  fencing token, a decimal string compared as a string
//	l  end of the lease, server time in Unix milliseconds
//	e  end of retention (completed records), Unix milliseconds
//	r  response (completed records)
//
// Time is the server's (TIME): the scripts compare and report it (as what is
// left, ttl), never the caller. Expiry is Redis's own: an in-progress record
// lives for its lease plus the abandoned-claim retention, a completed one
// for its retention; then Redis deletes it.

// clockLua defines now(), the server time in milliseconds. Before Redis 5,
// a script that reads TIME and then writes must replicate its effects.
const clockLua = `
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

// ttlLua defines ttl(h, t): what is left, in milliseconds at server time t,
// of the lease (in progress) or the retention (completed) of the record
// whose fields f, s, t, l, e, r are h.
const ttlLua = `
local function ttl(h, t)
  local until_ = h[2] == '1' and h[4] or h[5]
  local left = (tonumber(until_) or 0) - t
  if left < 0 then left = 0 end
  return string.format('%d', left)
end
`

// claimLua: ARGV fingerprint, token, lease ms, abandoned-retention ms.
// Returns {1} when taken, else {0, f, s, t, ttl, r}.
const claimLua = clockLua + ttlLua + `
local h = redis.call('HMGET', KEYS[1], 'f', 's', 't', 'l', 'e', 'r')
local t = now()
if h[2] then
  local takeover = h[2] == '1' and tonumber(h[4]) <= t and h[1] == ARGV[1]
  if not takeover then
    return {0, h[1], h[2], h[3], ttl(h, t), h[6] or ''}
  end
  redis.call('DEL', KEYS[1])
end
local lease = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'f', ARGV[1], 's', '1', 't', ARGV[2], 'l', string.format('%d', t + lease))
redis.call('PEXPIRE', KEYS[1], lease + tonumber(ARGV[4]))
return {1}
`

// getLua returns {f, s, t, ttl, r}, or {} when there is no record.
const getLua = clockLua + ttlLua + `
local h = redis.call('HMGET', KEYS[1], 'f', 's', 't', 'l', 'e', 'r')
if not h[2] then return {} end
return {h[1], h[2], h[3], ttl(h, now()), h[6] or ''}
`

// renewLua: ARGV token, lease ms, abandoned-retention ms. Returns 1 or 0.
const renewLua = clockLua + `
local h = redis.call('HMGET', KEYS[1], 's', 't')
if h[1] ~= '1' or h[2] ~= ARGV[1] then return 0 end
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'l', string.format('%d', now() + lease))
redis.call('PEXPIRE', KEYS[1], lease + tonumber(ARGV[3]))
return 1
`

// completeLua: ARGV token, response, retention ms. Returns 1 or 0.
const completeLua = clockLua + `
local h = redis.call('HMGET', KEYS[1], 's', 't')
if h[1] ~= '1' or h[2] ~= ARGV[1] then return 0 end
local ret = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 's', '2', 'r', ARGV[2], 'e', string.format('%d', now() + ret), 'l', '0')
redis.call('PEXPIRE', KEYS[1], ret)
return 1
`

// releaseLua: ARGV token. Returns 1 or 0.
const releaseLua = `
local h = redis.call('HMGET', KEYS[1], 's', 't')
if h[1] ~= '1' or h[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

// forceReleaseLua deletes an in-progress record whatever its token.
const forceReleaseLua = `
if redis.call('HGET', KEYS[1], 's') ~= '1' then return 0 end
redis.call('DEL', KEYS[1])
return 1
`

"""The Lua scripts that make shared admission atomic in Redis: one round trip admits a call (every rate
limit checked and counted, every budget's worst case reserved) and one settles it. Redis runs a script
with nothing in between, so processes that share the counters cannot slip past a cap together.

Layout under the prefix: `<c>` a hash per budget counter (scope, period, period start): su st sr the
settled usd, tokens and requests, ru rt rr what calls in flight reserved; `<c>:held` a sorted set of the
reservations in flight, member `<id>|<usd>|<tokens>`, scored by when it expires (ms, Redis's clock), so a
dead process's holds fall away; `rl:<scope>:req` and `rl:<scope>:tok` the rate windows (members
scored by ms); `loaded` says the settled spend was rebuilt from the store (gone after a FLUSHALL).
"""

# KEYS: loaded, then 2 per rate limit (req, tok), then 2 per counter (hash, held), then the index of held sets
# ARGV: ttl_ms, member, worst_usd, worst_tokens, n_limits, n_counters, n_checks,
#       rpm, tpm per limit (0: none), counter index, unit (1 usd, 2 tokens, 3 requests), cap per check
# -> {1} admitted | {-1} not loaded | {2, limit, "requests"|"tokens", retry_s} | {3, check, spent}
PURGE_FUNCTION = r"""
local function purge(c, held, now)
  local gone = redis.call('ZRANGEBYSCORE', held, '-inf', now)
  for _, m in ipairs(gone) do
    local u, tk = string.match(m, '|([^|]*)|([^|]*)$')
    redis.call('HINCRBYFLOAT', c, 'ru', 0 - tonumber(u))
    redis.call('HINCRBY', c, 'rt', 0 - tonumber(tk))
    redis.call('HINCRBY', c, 'rr', -1)
  end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', held, '-inf', now) end
  return #gone
end
"""

ADMIT = PURGE_FUNCTION + r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl, member = tonumber(ARGV[1]), ARGV[2]
local worst = {tonumber(ARGV[3]), tonumber(ARGV[4]), 1}
local nl, nc, nk = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local a = 8
for i = 1, nl do
  local req, tok = KEYS[2*i], KEYS[2*i+1]
  local rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a+1]); a = a + 2
  redis.call('ZREMRANGEBYSCORE', req, '-inf', now - 60000)
  redis.call('ZREMRANGEBYSCORE', tok, '-inf', now - 60000)
  local n = redis.call('ZCARD', req)
  if rpm > 0 and n >= rpm then
    local oldest = redis.call('ZRANGE', req, n - rpm, n - rpm, 'WITHSCORES')
    return {2, i, 'requests', math.max(1, math.ceil((tonumber(oldest[2]) + 60000 - now) / 1000))}
  end
  if tpm > 0 then
    local entries = redis.call('ZRANGE', tok, 0, -1, 'WITHSCORES')
    local sum = 0
    for j = 1, #entries, 2 do sum = sum + tonumber(string.match(entries[j], ':(%d+)$')) end
    if sum >= tpm then
      local excess, wait = sum - tpm, 0
      for j = 1, #entries, 2 do
        excess = excess - tonumber(string.match(entries[j], ':(%d+)$'))
        wait = tonumber(entries[j+1]) + 60000 - now
        if excess < 0 then break end
      end
      return {2, i, 'tokens', math.max(1, math.ceil(wait / 1000))}
    end
  end
end
local base = 1 + 2 * nl
for i = 1, nc do
  local c, held = KEYS[base + 2*i - 1], KEYS[base + 2*i]
  purge(c, held, now)
end
local fields = {{'su', 'ru'}, {'st', 'rt'}, {'sr', 'rr'}}
for k = 1, nk do
  local ci, unit, cap = tonumber(ARGV[a]), tonumber(ARGV[a+1]), tonumber(ARGV[a+2]); a = a + 3
  local c = KEYS[base + 2*ci - 1]
  local v = redis.call('HMGET', c, fields[unit][1], fields[unit][2])
  local spent = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0)
  if spent + worst[unit] > cap + 1e-12 then return {3, k, tostring(spent)} end
end
for i = 1, nl do redis.call('ZADD', KEYS[2*i], now, member) end
for i = 1, nc do
  local c, held = KEYS[base + 2*i - 1], KEYS[base + 2*i]
  redis.call('HINCRBYFLOAT', c, 'ru', worst[1])
  redis.call('HINCRBY', c, 'rt', worst[2])
  redis.call('HINCRBY', c, 'rr', 1)
  redis.call('ZADD', held, now + ttl, member .. '|' .. ARGV[3] .. '|' .. ARGV[4])
  redis.call('SADD', KEYS[#KEYS], held)
end
return {1}
"""

# KEYS: 2 per counter (hash, held), then the tok window of each rate-limited scope
# ARGV: n_counters, held member (`<id>|<usd>|<tokens>`, as admitted), usd, tokens, requests, worst usd,
#       worst tokens, id (the token windows' member)
# -> per counter {su, st, sr} after settling, as strings
SETTLE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nc, member = tonumber(ARGV[1]), ARGV[2]
local out = {}
for i = 1, nc do
  local c, held = KEYS[2*i-1], KEYS[2*i]
  if redis.call('ZREM', held, member) == 1 then
    redis.call('HINCRBYFLOAT', c, 'ru', 0 - tonumber(ARGV[6]))
    redis.call('HINCRBY', c, 'rt', 0 - tonumber(ARGV[7]))
    redis.call('HINCRBY', c, 'rr', -1)
  end
  local su = redis.call('HINCRBYFLOAT', c, 'su', ARGV[3])
  local st = redis.call('HINCRBY', c, 'st', ARGV[4])
  local sr = redis.call('HINCRBY', c, 'sr', ARGV[5])
  out[i] = {tostring(su), tostring(st), tostring(sr)}
end
if tonumber(ARGV[4]) > 0 then
  for j = 2*nc + 1, #KEYS do redis.call('ZADD', KEYS[j], now, ARGV[8] .. ':' .. ARGV[4]) end
end
return out
"""

# Extend the expiry of reservations still in flight (their process is alive).
# KEYS: held sets; ARGV: ttl_ms, then one member per key
RENEW = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], 'XX', now + tonumber(ARGV[1]), ARGV[i+1]) end
return #KEYS
"""

# Release the expired holds of every counter that has any (the heartbeat's sweep: a dead process's
# holds leave the totals that the budgets table and the next caller see). Touches keys named in the
# index rather than in KEYS: fine on one Redis server, not on a cluster.
# KEYS: the index of held sets -> how many holds were released
SWEEP = PURGE_FUNCTION + r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local released = 0
for _, held in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  released = released + purge(string.sub(held, 1, -6), held, now)
  if redis.call('ZCARD', held) == 0 then redis.call('SREM', KEYS[1], held) end
end
return released
"""

# The settled spend, rebuilt from the store, unless another process already did it.
# KEYS: loaded, then the counters; ARGV: su, st, sr per counter
LOAD = r"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
for i = 2, #KEYS do
  local a = 3 * (i - 2)
  redis.call('HSET', KEYS[i], 'su', ARGV[a+1], 'st', ARGV[a+2], 'sr', ARGV[a+3])
end
redis.call('SET', KEYS[1], '1')
return 1
"""

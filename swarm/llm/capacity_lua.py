"""The Redis scripts that keep a provider's shared capacity (run atomically by Redis).

Keys of one provider, under ``swarm:cap:<digest>:``
  ``state``  hash: ``limit`` (the adaptive concurrency), ``gen`` (bumped on every cut),
             ``calls`` and ``throttled`` (counters for metrics)
  ``slots``  sorted set: one member per call in flight, scored by its lease's expiry (ms)
  ``hold``   "not before" (ms) of a Retry-After, expiring by itself
  ``waiters`` hash: worker process -> "waiting calls:expiry ms", refreshed by its renewals
  ``rpm:<minute>``, ``tpm:<minute>``  fixed one-minute counters, read as a sliding window

Every script reads the clock of Redis (``TIME``), one clock for every node. When ``state`` is
missing — the first call ever, or Redis was flushed or restarted without its data — it is
recreated at the configured maximum and every caller is held back for ``rebuild`` ms: long
enough for every live worker to re-register the slots it holds (:data:`RENEW`, which re-adds
them), so a flush cannot make the cluster exceed the limit, and slots of dead workers are gone
with the flush, so none leak.
"""

from __future__ import annotations

_CLOCK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: A sliding-window estimate from the previous and the current fixed minute, as
#: swarm.domain.capacity.window_count decides it; returns ms to wait (0: room now).
_WINDOW = """
local function window_wait(prefix, kind, minute, now, limit, need)
  if limit <= 0 then return 0 end
  local elapsed = now - minute * 60000
  local share = 1 - elapsed / 60000
  local prev = tonumber(redis.call('GET', prefix .. kind .. ':' .. (minute - 1)) or '0')
  local cur = tonumber(redis.call('GET', prefix .. kind .. ':' .. minute) or '0')
  local used = prev * share + cur
  -- one call larger than the whole budget runs in an empty window, or it would wait forever
  if used + need <= limit or used <= 0 then return 0 end
  local rest = 60000 - elapsed
  if prev <= 0 then return rest end
  return math.max(10, math.min(rest, math.ceil((used + need - limit) / prev * 60000)))
end
"""

#: KEYS: state, slots, hold, prefix. ARGV: token, lease ms, max concurrency (0: none), rpm, tpm
#: (0: none), estimated tokens, rebuild ms.
#: Returns {granted, wait ms (-1: until a slot is released) or the minute granted in, gen, limit}.
ACQUIRE = (
    _CLOCK
    + _WINDOW
    + """
local state, slots, hold, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local maxc, rpm, tpm, need = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('EXISTS', state) == 0 then
  redis.call('HSET', state, 'limit', maxc, 'gen', 0, 'calls', 0, 'throttled', 0, 'rebuild', now + tonumber(ARGV[7]))
  if tonumber(ARGV[7]) > 0 then
    redis.call('SET', hold, now + tonumber(ARGV[7]), 'PX', ARGV[7])
    return {0, tonumber(ARGV[7]), 0, tostring(maxc)}
  end
end
local gen = tonumber(redis.call('HGET', state, 'gen') or '0')
local limit = tonumber(redis.call('HGET', state, 'limit') or maxc)
local until_ms = tonumber(redis.call('GET', hold) or '0')
if until_ms > now then return {0, until_ms - now, gen, tostring(limit)} end
redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
if maxc > 0 then
  if limit > maxc then
    limit = maxc
    redis.call('HSET', state, 'limit', limit)
  end
  if redis.call('ZCARD', slots) >= math.floor(limit) then return {0, -1, gen, tostring(limit)} end
end
local minute = math.floor(now / 60000)
local wait = window_wait(prefix, 'rpm', minute, now, rpm, 1)
wait = math.max(wait, window_wait(prefix, 'tpm', minute, now, tpm, need))
if wait > 0 then return {0, wait, gen, tostring(limit)} end
redis.call('ZADD', slots, now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', slots, math.max(tonumber(ARGV[2]) * 2, 120000))
redis.call('HINCRBY', state, 'calls', 1)
if rpm > 0 then
  redis.call('INCR', prefix .. 'rpm:' .. minute)
  redis.call('PEXPIRE', prefix .. 'rpm:' .. minute, 150000)
end
if tpm > 0 then
  redis.call('INCRBY', prefix .. 'tpm:' .. minute, need)
  redis.call('PEXPIRE', prefix .. 'tpm:' .. minute, 150000)
end
return {1, minute, gen, tostring(limit)}
"""
)

#: KEYS: state, slots, hold, prefix. ARGV: token, outcome ("ok", "429" or "other"), max
#: concurrency, gen at acquire, Retry-After ms (0: none), minute of the reservation, tokens used
#: minus reserved (settles TPM; ignored if that minute is gone). Frees the slot and adapts:
#: +1/limit on success; on a 429 halve (once per generation: a burst of 429s from calls that all
#: started before the last cut cuts once) and hold everyone until Retry-After.
RELEASE = (
    _CLOCK
    + """
local state, slots, hold, prefix = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
redis.call('ZREM', slots, ARGV[1])
local maxc, started, outcome = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[2]
local diff = tonumber(ARGV[7])
if diff ~= 0 and redis.call('EXISTS', prefix .. 'tpm:' .. ARGV[6]) == 1 then
  redis.call('INCRBY', prefix .. 'tpm:' .. ARGV[6], diff)
end
if redis.call('EXISTS', state) == 0 then return 0 end
local limit = tonumber(redis.call('HGET', state, 'limit'))
if outcome == 'ok' and maxc > 0 and limit < maxc then
  redis.call('HSET', state, 'limit', tostring(math.min(maxc, limit + 1 / math.max(limit, 1))))
elseif outcome == '429' then
  redis.call('HINCRBY', state, 'throttled', 1)
  local after = tonumber(ARGV[5])
  if after > 0 then
    local until_ms = tonumber(redis.call('GET', hold) or '0')
    if now + after > until_ms then redis.call('SET', hold, now + after, 'PX', after) end
  end
  if maxc > 0 and started == tonumber(redis.call('HGET', state, 'gen')) then
    redis.call('HSET', state, 'limit', tostring(math.max(1, limit / 2)))
    redis.call('HINCRBY', state, 'gen', 1)
  end
end
return 1
"""
)

#: KEYS: slots, waiters, state. ARGV: lease ms, worker id, waiting calls, then the tokens this
#: worker holds. Extends their leases and says how many of this worker's calls wait. While the
#: state is lost or being rebuilt it re-adds the leases Redis lost; otherwise it only extends
#: (XX), so a slot released between the worker's listing and this script is not brought back.
RENEW = (
    _CLOCK
    + """
local lease = tonumber(ARGV[1])
local rebuild = tonumber(redis.call('HGET', KEYS[3], 'rebuild') or '-1')
local restore = rebuild < 0 or now < rebuild
for i = 4, #ARGV do
  if restore then redis.call('ZADD', KEYS[1], now + lease, ARGV[i])
  else redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i]) end
end
if #ARGV >= 4 then redis.call('PEXPIRE', KEYS[1], math.max(lease * 2, 120000)) end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ':' .. (now + lease))
redis.call('PEXPIRE', KEYS[2], math.max(lease * 2, 120000))
return 1
"""
)

#: KEYS: state, slots, hold, waiters. Returns {limit, in flight, waiting, calls, throttled, hold ms}.
VIEW = (
    _CLOCK
    + """
local state, slots, hold, waiters = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local waiting = 0
local entries = redis.call('HGETALL', waiters)
for i = 1, #entries, 2 do
  local n, expiry = string.match(entries[i + 1], '^(%d+):(%d+)$')
  if n and tonumber(expiry) > now then
    waiting = waiting + tonumber(n)
  else
    redis.call('HDEL', waiters, entries[i])
  end
end
local in_flight = redis.call('ZCOUNT', slots, now, '+inf')
local until_ms = tonumber(redis.call('GET', hold) or '0')
local v = redis.call('HMGET', state, 'limit', 'calls', 'throttled')
local calls, throttled = tonumber(v[2] or '0'), tonumber(v[3] or '0')
return {tostring(v[1] or ''), in_flight, waiting, calls, throttled, math.max(0, until_ms - now)}
"""
)

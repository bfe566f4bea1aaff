// The Lua scripts behind the fleet's shared rate limits and membership
// (RedisLeaseService). Each runs atomically in Redis and reads Redis' own
// clock (TIME), so the replicas' clocks never decide who gets which token.
//
// Keys, under the prefix `switchboard:`:
//   limit:<kind>:<name>          hash: tat (theoretical arrival time, us),
//                                rate (current, AIMD), paused (until, us),
//                                conf and burst (as configured), hold and
//                                hold_live (a fallback recovery's end, us,
//                                and the replicas it waits for)
//   limit:<kind>:<name>:recovered set: replicas back during the recovery
//   limit:<kind>:<name>:leases   hash: replica -> "<tokens> <last slot us>
//                                <interval us>" of its latest lease (for
//                                `sbctl limit`)
//   replicas                     sorted set: replica -> expiry (ms)
// Pause notices go out on the channel `switchboard:limit-events` as
// "<kind>:<name> <paused until us> <rate>".
//
// Numbers cross as strings: Redis truncates Lua numbers to integers in
// replies, and Lua's tostring() would round microsecond times.
#pragma once

namespace switchboard::fleet {

// KEYS: state, replicas, leases, recovered. ARGV: replica, wanted, at_once,
// configured rate, burst, horizon (us), succeeded cost since the last lease,
// rate increase per succeeded cost unit, key TTL (ms), recovery hold (us; 0
// unless the replica comes back from its fallback share), replicas the
// replica last knew alive.
// Returns {granted, not_before, first_slot, interval, rate, paused, now,
// live replicas}: slot k at max(not_before, first_slot + k * interval).
//
// Recovery: replicas on their fallback share send rate / live each, unseen
// by the schedule, and come back one by one (each on its own reconnect
// backoff). The first one back opens a hold of the given length; during it
// the schedule runs at rate x (replicas back) / (replicas alive), so that
// the replicas back and those still on their share never send more than
// the rate together. The hold ends when every live replica is back.
inline constexpr char kLeaseScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local conf, burst = tonumber(ARGV[4]), tonumber(ARGV[5])
local s = redis.call('HMGET', KEYS[1], 'tat', 'rate', 'paused', 'conf', 'burst', 'hold',
  'hold_live')
local tat = tonumber(s[1]) or 0
local rate = tonumber(s[2]) or conf
local paused = tonumber(s[3]) or 0
local hold = tonumber(s[6]) or 0
local hold_live = tonumber(s[7]) or 1
if tonumber(s[4]) ~= conf or tonumber(s[5]) ~= burst then rate = conf end
local succeeded = tonumber(ARGV[7])
if succeeded > 0 and now >= paused and rate < conf then
  rate = math.min(conf, rate + succeeded * tonumber(ARGV[8]))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now / 1000))
local live = redis.call('ZCARD', KEYS[2])
local recovery = tonumber(ARGV[10])
if recovery > 0 and now >= hold then
  hold = now + recovery
  hold_live = math.max(live, tonumber(ARGV[11]))
  redis.call('DEL', KEYS[4])
end
local share = 1
if now < hold then
  redis.call('SADD', KEYS[4], ARGV[1])
  redis.call('PEXPIRE', KEYS[4], math.floor((hold - now) / 1000) + 1000)
  local back = redis.call('SCARD', KEYS[4])
  local alive = math.max(live, hold_live)
  if back >= alive then hold = now else share = back / alive end
end
local interval = 1000000 / (rate * share)
local not_before = math.max(now, paused)
local base = math.max(tat, not_before)
local first = base - (burst - 1) * interval
local wanted, at_once = tonumber(ARGV[2]), tonumber(ARGV[3])
local fit = math.floor((now + tonumber(ARGV[6]) - first) / interval) + 1
if fit < 0 then fit = 0 end
local n = math.min(wanted, fit)
if n < at_once then
  if fit > 0 then n = at_once else n = 0 end
end
if n > 0 then
  tat = base + n * interval
  redis.call('HSET', KEYS[3], ARGV[1], string.format('%d %.0f %.3f', n,
    math.max(not_before, first + (n - 1) * interval), interval))
  redis.call('PEXPIRE', KEYS[3], ARGV[9])
end
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat), 'rate',
  string.format('%.17g', rate), 'paused', string.format('%.0f', paused), 'conf', ARGV[4],
  'burst', ARGV[5], 'hold', string.format('%.0f', hold), 'hold_live', tostring(hold_live))
redis.call('PEXPIRE', KEYS[1], ARGV[9])
return {tostring(n), string.format('%.0f', not_before), string.format('%.3f', first),
  string.format('%.3f', interval), string.format('%.17g', rate * share),
  string.format('%.0f', paused), string.format('%.0f', now), tostring(live)}
)lua";

// KEYS: state. ARGV: pause (us), configured rate, burst, decrease factor,
// minimum rate, key TTL (ms), channel, limit key. Pauses the limit, lowers
// its rate once per throttle episode (a throttle during a pause only
// extends it), voids every leased token (the schedule restarts at the
// pause's end), and tells every replica. Returns {paused, rate}.
inline constexpr char kThrottleScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local conf, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
local s = redis.call('HMGET', KEYS[1], 'rate', 'paused', 'conf', 'burst')
local rate = tonumber(s[1]) or conf
local paused = tonumber(s[2]) or 0
if tonumber(s[3]) ~= conf or tonumber(s[4]) ~= burst then rate = conf end
if now >= paused then rate = math.max(rate * tonumber(ARGV[4]), tonumber(ARGV[5])) end
paused = math.max(paused, now + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', paused), 'rate',
  string.format('%.17g', rate), 'paused', string.format('%.0f', paused), 'conf', ARGV[2],
  'burst', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[7], ARGV[8] .. ' ' .. string.format('%.0f', paused) .. ' ' ..
  string.format('%.17g', rate))
return {string.format('%.0f', paused), string.format('%.17g', rate)}
)lua";

// KEYS: replicas. ARGV: replica, TTL (ms); a TTL of 0 leaves the fleet.
// Returns the replicas alive.
inline constexpr char kHeartbeatScript[] = R"lua(
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now_ms + ttl), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], 10 * ttl)
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now_ms))
return redis.call('ZCARD', KEYS[1])
)lua";

// KEYS: state, leases, replicas. Returns {now, rate, paused, conf, live
// replicas, then replica, lease, ... of the live replicas}: a limit's shared
// state, for `sbctl limit`.
inline constexpr char kDescribeScript[] = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', string.format('%.0f', now / 1000))
local s = redis.call('HMGET', KEYS[1], 'rate', 'paused', 'conf')
local out = {string.format('%.0f', now), s[1] or '', s[2] or '0', s[3] or '',
  tostring(redis.call('ZCARD', KEYS[3]))}
local leases = redis.call('HGETALL', KEYS[2])
for i = 1, #leases, 2 do
  if redis.call('ZSCORE', KEYS[3], leases[i]) then
    out[#out + 1] = leases[i]
    out[#out + 1] = leases[i + 1]
  end
end
return out
)lua";

}  // namespace switchboard::fleet

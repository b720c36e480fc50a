import { createHash } from 'node:crypto';

/** A Lua script and its SHA1, for EVALSHA with a fallback to EVAL after a restart or failover. */
export interface Script {
  readonly source: string;
  readonly sha: string;
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

// Record fields: s status (p in progress, c completed), f fingerprint, t token (the claim's nonce),
// c createdAt, l leaseUntil, d completedAt, x expiresAt, k outcome kind, v outcome JSON, b body.
// Times come from the server's clock (TIME), so instances with skewed clocks agree on leases.
// Every number computed in Lua goes to redis.call formatted as an integer (ms): Redis 7.2.0 to
// 7.2.4 turn a Lua number into text in exponent form (1.2e+05), which PEXPIRE refuses
// (redis/redis#13113).
const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function ms(n) return string.format('%d', n) end`;

/**
 * KEYS: record. ARGV: fingerprint, leaseMs, token. One round trip claims, reports or replays.
 * Idempotent for its token: the same claim resent (ioredis does after a reconnect) is claimed again.
 * Resent, it writes what it finds (the status, so the expiry stays): a WAIT behind it waits for
 * the connection's last write, and a new connection (ioredis resends after a reconnect, perhaps to
 * a new master) has none; WAIT would count every replica at once, whether it has the record or not.
 */
export const claimScript = script(`${NOW}
local lease = tonumber(ARGV[2])
local r = redis.call('HMGET', KEYS[1], 's', 'f', 'l', 'c', 'd', 'x', 'k', 'v', 'b', 't')
if r[1] then
  if r[2] ~= ARGV[1] then return {'mismatch'} end
  if r[1] == 'p' and r[10] == ARGV[3] then
    redis.call('HSET', KEYS[1], 's', 'p')
    return {'claimed', 0}
  end
  if r[1] == 'c' then
    return {'completed', r[2], tonumber(r[4]), tonumber(r[5]), tonumber(r[6]), r[7], r[8], r[9] or ''}
  end
  local left = tonumber(r[3]) - now
  if left > 0 then return {'inProgress', left} end
  redis.call('HSET', KEYS[1], 't', ARGV[3], 'l', ms(now + lease))
  redis.call('PEXPIRE', KEYS[1], ms(2 * lease))
  return {'claimed', 1}
end
redis.call('HSET', KEYS[1], 's', 'p', 'f', ARGV[1], 't', ARGV[3], 'c', ms(now), 'l', ms(now + lease))
redis.call('PEXPIRE', KEYS[1], ms(2 * lease))
return {'claimed', 0}`);

/**
 * KEYS: record. ARGV: token, ttlMs, kind, meta, body, fingerprint. Stores the outcome only for the
 * token's owner; a completion resent after it succeeded answers 1 again (and writes what it
 * finds, as a resent claim does, for the WAIT behind it). A record that is gone (its claim lost in
 * a failover, never replicated) is written from the fingerprint, since nobody else holds the key;
 * a record another token holds is never touched.
 */
export const completeScript = script(`local r = redis.call('HMGET', KEYS[1], 's', 't')
if r[2] == ARGV[1] and r[1] == 'c' then
  redis.call('HSET', KEYS[1], 's', 'c')
  return 1
end
${NOW}
if not r[1] and ARGV[6] ~= '' then
  redis.call('HSET', KEYS[1], 's', 'p', 'f', ARGV[6], 't', ARGV[1], 'c', ms(now))
elseif r[1] ~= 'p' or r[2] ~= ARGV[1] then
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 's', 'c', 'd', ms(now), 'x', ms(now + ttl), 'k', ARGV[3], 'v', ARGV[4], 'b', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ms(ttl))
return 1`);

/** KEYS: record. ARGV: token. Deletes an in-progress record only for the token's owner. */
export const releaseScript = script(`local r = redis.call('HMGET', KEYS[1], 's', 't')
if r[1] ~= 'p' or r[2] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1`);

/**
 * KEYS: record. ARGV: token, leaseMs. Renews a running claim's lease (and its record's deadline,
 * two leases) only for the token's owner: a record completed, released, taken over or gone is
 * never touched, nor brought back. A lease or deadline is never shortened.
 */
export const extendScript = script(`local r = redis.call('HMGET', KEYS[1], 's', 't', 'l')
if r[1] ~= 'p' or r[2] ~= ARGV[1] then return 0 end
${NOW}
local lease = tonumber(ARGV[2])
if now + lease > tonumber(r[3]) then redis.call('HSET', KEYS[1], 'l', ms(now + lease)) end
if redis.call('PTTL', KEYS[1]) < 2 * lease then redis.call('PEXPIRE', KEYS[1], ms(2 * lease)) end
return 1`);

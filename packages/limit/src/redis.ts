/**
 * A rate limit shared by every instance of a service, on Redis (GCRA in one Lua script).
 * @module @holdfast/limit/redis
 */
import { createHash, randomBytes } from 'node:crypto';
import { type Deadline, DeadlineQueue, errorLabel, fnOption, parseOptions } from '@holdfast/core';
import { z } from 'zod';
import { LimitStoreUnavailableError } from './errors.js';
import { intervalOption, keyOption, nameDefaults, refillBound } from './options.js';
import {
  checkCost,
  hashKey,
  type RateDecision,
  type RateLimiter,
  RateLimiterBase,
  type RateLimiterSnapshot,
  UNKNOWN,
} from './rate.js';
import { type Common, commonOf, list } from './shared.js';

export type { RateDecision, RateLimitExecuteOptions, RateLimiter, RateLimiterSnapshot } from './rate.js';

/** The part of an ioredis client (Redis, Cluster, Sentinel-backed) the limiter uses. */
export interface RedisClient {
  /** ioredis connection status: commands are sent only when it is `ready` (or `wait`, lazyConnect). */
  readonly status: string;
  /** Sends one command and resolves to its reply. */
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
  /** Calls `listener` once, when the connection is (again) ready. */
  once(event: 'ready', listener: () => void): unknown;
  /** Removes a `ready` listener the limiter added. */
  removeListener(event: 'ready', listener: () => void): unknown;
}

const redisClientOption = z.custom<RedisClient>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as RedisClient).call === 'function' &&
    typeof (v as RedisClient).once === 'function' &&
    typeof (v as RedisClient).status === 'string',
  { error: 'must be an ioredis client (new Redis(), new Redis.Cluster() or a Sentinel-backed Redis)' },
);

/** Validates the options of {@link redisRateLimiter}; {@link RedisRateLimiterOptions} is inferred from it. */
export const redisRateLimiterOptionsSchema = z
  .strictObject({
    /** An ioredis client. The limiter does not own it: close it yourself. */
    client: redisClientOption,
    /** Calls allowed per `interval`, across every instance. */
    limit: z.number().int().min(1).max(1_000_000_000),
    /** The period `limit` is counted over, ms, from 1 to 1e15. @default 1000 */
    interval: intervalOption,
    /** Calls allowed at once after a quiet spell. @default `limit` */
    burst: z.number().int().min(1).max(1_000_000_000).optional(),
    /**
     * Prefix of every Redis key, without braces, spaces or control characters: the limiter puts
     * each key's hash in a Cluster hash tag itself (braces in the prefix would end or move it: a
     * `{}` made Cluster hash a decision's two keys apart, and every decision failed). Limiters
     * given the same prefix share one count per key, whatever their settings.
     * @default `holdfast:rl:gcra:<limit>:<interval>:<burst>:<name>:` (the name as `escape()` spells
     * it, or `~` and its SHA-1 when that is longer than 100 or the name had a secret hidden from it):
     * limiters with other settings or names never share a key, the same limit in every process does
     */
    prefix: z
      .string()
      .max(200)
      // The rule of the idempotency store's prefix.
      .regex(/^[^{}\s\p{Cc}]*$/u, 'must not contain braces, spaces or control characters')
      .optional(),
    /** The key of calls that give none. @default '' */
    defaultKey: z.string().default(''),
    /** The key a call counts under, from the call's own: see `tokenBucket()`. @default the call's key */
    key: keyOption,
    /**
     * When Redis cannot be reached (down, not connected, slower than `commandTimeout`): `open`
     * lets the call through (and emits `rateLimit.storeError`), `closed` refuses it with
     * `LimitStoreUnavailableError` (503). @default 'open'
     */
    onRedisError: z.enum(['open', 'closed']).default('open'),
    /** How long a decision may take before Redis counts as unreachable, ms. @default 250 */
    commandTimeout: z.number().finite().positive().max(60_000).default(250),
    /**
     * Opt-in exact counting of resent decisions: how long an allowed decision is remembered under
     * its request id, ms, so that a command ioredis resends after a reconnect (its reply lost) is
     * answered allowed again instead of taking twice. It costs a key per allowed decision, with an
     * expiry of its own: about a quarter of Redis' work per decision. Unset or `0` (the default):
     * decisions carry no marker, and a resent one is decided again, so one call may take twice
     * from the limit: the limit errs on the strict side, it never lets more through. Give-backs
     * carry a marker of their own either way, kept this long or 10 s, whichever is longer: a
     * resent give-back would give twice, and a client would get more than the limit. One that
     * reaches Redis later than that (ioredis resends once ready again, however late) gives nothing.
     * @default unset: no marker on decisions
     */
    resendWindow: z.number().int().min(0).max(3_600_000).optional(),
    /** Makes a request id: unique per marked decision and per give-back. @default a random per-process prefix and a counter */
    requestId: fnOption<() => string>().optional(),
    ...nameDefaults('redisRateLimiter'),
  })
  // A key's TAT may run `interval x burst / limit` ahead of now: its expiry (PX) must stay a plain
  // integer in the script.
  .superRefine(refillBound);

/** A rate limiter on Redis: it decides in one round trip. */
export interface RedisRateLimiter extends RateLimiter {
  /** Takes `cost` units from `key` if it can, without running anything. */
  take(key?: string, cost?: number): Promise<RateDecision>;
  snapshot(): RedisRateLimiterSnapshot;
}

/** A Redis limiter's counts, with the decisions Redis could not make. */
export interface RedisRateLimiterSnapshot extends RateLimiterSnapshot {
  /** Decisions Redis could not make (down, not connected, slower than `commandTimeout`). */
  readonly storeErrors: number;
  /**
   * `warn` while the client is not connected (`status` other than `ready`), and while this
   * limiter's own last decision failed (timed out, errored, a malformed reply: a frozen Redis
   * stays `ready`) until one is answered again: its own, or another limiter's on the client made
   * after it and answered within this one's `commandTimeout`. Another limiter's failures do not
   * make this one `warn`.
   */
  readonly status: 'pass' | 'warn';
}

/** Options of {@link redisRateLimiter}. */
export type RedisRateLimiterOptions = z.input<typeof redisRateLimiterOptionsSchema>;

// GCRA (as redis-cell): the key holds the theoretical arrival time (TAT), in ms of the server's
// clock (TIME), so instances with skewed clocks agree. KEYS: tat, request-id marker (same hash
// slot; only with a resend window, which is opt-in). The limiter's constants (emission interval, burst
// tolerance, the expiry of a key that owed nothing, the resend window) are written into its own
// copy of the script, not sent: every argument costs Redis a string object, a Lua string and a
// slot in ARGV, and a decision of cost 1 sends only its keys (callgrind, Redis 7.0: an allowed
// decision 76k -> 71k instructions, 59k -> 51k without a marker). ARGV only for a cost other than 1: the
// increment (emission interval x cost), then the expiry of a key that owed nothing (the increment
// rounded up, made by the client: every Lua number passed to a command costs Redis a
// snprintf("%.17g"), about 3k instructions). One script per limiter: a handful in a service, kept
// by Redis like any other (a server that dropped one answers NOSCRIPT, and the limiter sends it).
// With a resend window, an allowed decision writes its marker first and only if absent (SET NX): a resent command finds
// it, is answered allowed and changes nothing; Redis stops a script for OOM only before its first
// write, so an allowed decision never leaves a marker without its TAT. The marker holds '1', not
// the reply (that snprintf again). A refused decision takes nothing and writes nothing: it only
// looks for the marker, in case it is the resend of a decision that was allowed (then it answers
// allowed, 0 left); a resent refusal is decided again, and counted at most once since a refusal
// is not counted. Replies one integer: the units left when allowed (>= 0), minus the ms to wait
// when refused (<= -1). The TAT goes to Redis as a Lua number, which Redis writes out exactly. A
// TAT further ahead than this limiter's burst tolerance is kept as it is: a step back of the
// server's clock leaves one, but so does another limiter with a longer tolerance on the same key
// (a shared prefix, a rolling upgrade that changes the burst), and lowering it on a refusal gave
// that one a fresh burst each time. The key layout (a decimal TAT, an expiry when it is due) is
// the previous version's: both versions decide on the same keys during a rolling upgrade.
// The constants are JavaScript's shortest spelling of each number, which Lua reads back exactly.
// J is a whole ms: the TAT is rounded down before J is added, not after (summed as floats, TAT + J
// rounded up past a whole ms when the TAT's fraction was within a float's step of it: at 2^42 ms
// the reply told a TAT 0.001 ms after the stored one).
// An expiry computed in the script goes to Redis as an integer string (string.format('%d')):
// Redis 7.2.0-7.2.4 print a Lua number in its shortest form, 2e8 as "2e+08", which PX refuses
// (redis/redis#13113), and a key owing 2e8 ms failed every decision.
// The units left are rounded down with a slack (`slack`, in units) of the floats' own error: the
// TAT and now are ms near 2^41, a float's step there is 2^-12 ms, and with a unit not a whole
// number of ms (6 a second: 166.67 ms) a fresh key's 5 units came out 4.99999 and were told as 4
// (remaining burst - 2, a reset of two units), where tokenBucket() says burst - 1. Only the reply
// changes: what is stored (the TAT, its expiry) and whether a decision is allowed are as before,
// so a process still running the previous script decides alike on the same keys.
const gcraSource = (
  emission: string,
  tolerance: string,
  px: string,
  window: string,
  units: string,
  unit: string,
  most: string | undefined,
  hold: string,
  slack: string,
) => `local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
local px
if tat <= now then tat = now px = ARGV[2] or '${px}' end
local new = tat + (ARGV[1] or ${emission})
local diff = now + ${tolerance} - new
${
  window === '0'
    ? 'if diff < 0 then return -math.ceil(-diff) end'
    : "if diff < 0 then return redis.call('EXISTS', KEYS[2]) == 1 and 0 or -math.ceil(-diff) end"
}
diff = diff / ${emission} + ${slack}
diff = diff - diff % 1${most === undefined ? '' : `\nif diff > ${most} then diff = ${most} end`}
${window === '0' ? '' : `if not redis.call('SET', KEYS[2], '1', 'PX', '${window}', 'NX') then return diff end`}
redis.call('SET', KEYS[1], new, 'PX', px or string.format('%d', math.max(1, math.ceil(new - now))))
local jk = KEYS[${window === '0' ? 2 : 3}]
if jk then
  local j = tonumber(redis.call('GET', jk))
  if not j then j = math.ceil(now) redis.call('SET', jk, string.format('%d', j), 'PX', '${hold}') end
  new = new - new % 1 + j
end
new = new / ${unit}
return diff + ${units} * (new - new % 1)`;

/** How far the give-back clock J may run ahead of the server's clock, ms (2^42: 139 years). */
const MAX_LEAD = 2 ** 42;

// Gives back what an allowed decision took (KEYS: tat, the give-back's own marker; ARGV: its
// increment, how long the marker is kept), for a decision whose caller was already refused
// (`onRedisError: 'closed'`, Redis too slow) when Redis ran it, or whose request the rest of the
// policy refused: the TAT moves back by the increment, or the key goes when that is before now
// (a missing key is now). Its marker is written first and only if absent (SET NX): a resent
// give-back (ioredis resends after a reconnect) finds it and gives nothing (before, it gave back
// twice, and a client got more than the limit); a give-back that finds the key gone writes it
// too, so a resend after a new decision made the key again does not take that one's units.
// Give-backs are marked whether decisions are or not: they are rare (a late answer under
// `closed`, a request the rest of the policy refused), and unmarked, a resend errs loose. The
// marker expires, and ioredis resends a command whose reply was lost whenever the connection is
// ready again (after a frozen server, a partition, however long): ARGV[3] is a deadline on the
// server's clock, reached before the marker goes, after which the script gives nothing (before,
// a resend 11 s later gave back twice).
// How much: what of the decision's cell the clock has not yet absorbed, where the cell is now.
// ARGV[4] is the decision's TAT plus J as the decision read it (its reply): J (KEYS[3], ms) is
// the key's give-back clock, which goes up by every give-back and never down. Another give-back
// since (of a decision taken before this one) moved this cell back by what it gave: the TAT the
// decision left, less J's rise since, is at or after where the cell now ends, and nothing of it
// past that is given. Before, a give-back used the TAT as decided: A and B allowed, A given back
// in part moved B's cell back, C allowed in B's old place, B given back whole: two processes with
// bulkheads let calls through 2-26 ms early (the fresh-clone CI of 479f2ee). J never goes down:
// its key lives until its value is 'hold' ms past. A give-back that finds it gone gives nothing:
// gone by its expiry, `hold` (over 4 times the longest a cell is owed) has passed since the
// decision's J and nothing is left to give anyway; gone otherwise (evicted under maxmemory,
// deleted) while it ran ahead of the clock, J read as now would be below what it was, and the
// shift of this cell given again (the TAT 864 ms before the exact schedule's). J runs ahead of the clock by what
// is given back faster than time passes, at most MAX_LEAD: past it a give-back gives nothing (so
// the decision's reply, TAT + J, stays within its bound).
const refundSource = `local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
if now > tonumber(ARGV[3]) or not redis.call('SET', KEYS[2], '1', 'PX', ARGV[2], 'NX') then return 0 end
local j = tonumber(redis.call('GET', KEYS[3]))
if not j then return 0 end
local give = math.min(tonumber(ARGV[1]), tonumber(ARGV[4]) - j - now)
if give <= 0 or j + give - now > ${MAX_LEAD} then return 0 end
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat then return 0 end
j = math.ceil(j + give)
redis.call('SET', KEYS[3], string.format('%d', j), 'PX', string.format('%d', j - math.floor(now) + tonumber(ARGV[5])))
local back = tat - give
if back <= now then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], back, 'PX', string.format('%d', math.max(1, math.ceil(back - now))))
return 1`;

/** The largest reply the decision script makes: its integers stay exact. */
const MAX_REPLY = 2 ** 53;

/** The server's clock, whole seconds, on the node that holds KEYS[1]. */
const serverNow = "return redis.call('TIME')[1]";

/**
 * A rate limit shared by every instance: GCRA (the generic cell rate algorithm of redis-cell)
 * in one Lua script, one round trip per decision, on the server's clock. Keys are hashed and
 * wrapped in a Cluster hash tag, so any key is Cluster-safe. A decision ioredis resends after a
 * reconnect is decided again and may take twice (stricter, never looser), unless `resendWindow`
 * is set: then it is recognised by its request id and counted once. A give-back is always
 * recognised, and given once.
 *
 * @example
 * const api = redisRateLimiter({ client: new Redis(process.env.REDIS_URL), limit: 100, interval: 1_000 });
 * await api.execute(() => handle(req), { key: req.ip });
 */
export function redisRateLimiter(options: RedisRateLimiterOptions): RedisRateLimiter {
  const o = parseOptions('redisRateLimiter', redisRateLimiterOptionsSchema, options);
  // The name as given: two names that show alike once a password is hidden are two limits.
  const limiter = new RedisGcra(commonOf(o), o, typeof options.name === 'string' ? options.name : o.name);
  limiter.unregister = list('rateLimiter', o.name, limiter, o.policies);
  return limiter;
}

type Parsed = z.output<typeof redisRateLimiterOptionsSchema>;

class RedisGcra extends RateLimiterBase {
  readonly #emission: number;
  readonly #burst: number;
  /** Whether decisions carry a request-id marker (`resendWindow` above 0, opt-in). */
  readonly #marked: boolean;
  readonly #requestId: () => string;
  #storeErrors = 0;
  /**
   * When this limiter's last decision failed: how many decisions its client had made then (see
   * {@link OnClient}); undefined when it was answered.
   */
  #failedAt: number | undefined;
  readonly #keys = new Map<string, string>();
  /** What every decision of this limiter shares: its script, its connection, its deadlines. */
  readonly #line: Line;
  readonly #prefix: string;
  /** The ms an allowed decision's TAT is told in (1 but for bursts in the thousands). */
  readonly #unit: number;
  /** How long the give-back clock's key outlives its value, ms. */
  readonly #hold: number;

  constructor(
    common: Common,
    readonly o: Parsed,
    given: string,
  ) {
    const burst = o.burst ?? o.limit;
    super(common, o.defaultKey, o.key, burst, (burst * o.interval) / o.limit);
    this.#burst = burst;
    this.#emission = o.interval / o.limit;
    const window = o.resendWindow ?? 0;
    this.#marked = window > 0;
    // An allowed decision's reply carries its TAT (whole units of `#unit` ms, rounded down), plus
    // the give-back clock J when it can be given back, beside what is left: left + (burst + 1) x
    // (TAT + J), below 2^53 (exact in Lua, in Redis' integer reply, in JavaScript) for server
    // clocks up to 2^43 ms (the year 2248), J's lead, and the longest a key is owed.
    const most = (2 ** 44 + MAX_LEAD + this.#emission * this.#burst) * (this.#burst + 1);
    this.#unit = 2 ** Math.max(0, Math.ceil(Math.log2(most / 2 ** 53)));
    // J's key outlives its value by this much: a give-back within it of a decision that read J is
    // exact; one after, stricter (J reads as now). Four times the longest a cell is owed, >= 10 s.
    this.#hold = Math.max(10_000, Math.ceil(4 * this.#emission * (this.#burst + 1)));
    const source = gcraSource(
      String(this.#emission),
      String(this.#emission * this.#burst),
      String(Math.max(1, Math.ceil(this.#emission))),
      String(window),
      String(this.#burst + 1),
      String(this.#unit),
      // Under 1 ms a unit, the clock's rounding (2^-12 ms today) may count units past the burst,
      // which would spill into the TAT's place (975 left of a fresh 1e6): capped. Above, it
      // stays under 0.01 of a unit: no cap, no cost.
      this.#emission < 1 ? String(this.#burst) : undefined,
      String(this.#hold),
      // A few float steps of the largest number in the subtraction (now, up to 2^44 ms, plus the
      // tolerance), in units; at most 0.01 of a unit (under 1 ms a unit the clock's rounding
      // counts whole units anyway, and the cap above holds the burst).
      String(Math.min(0.01, ((2 ** 44 + this.#emission * this.#burst) * 2 ** -50) / this.#emission)),
    );
    this.#line = {
      client: onClient(o.client),
      deadlines: new DeadlineQueue(o.commandTimeout, common.clock, (d) => d.expire()),
      timeout: o.commandTimeout,
      source,
      sha: createHash('sha1').update(source).digest('hex'),
      late: o.onRedisError === 'closed' ? (args, reply) => this.#refund(args, reply) : undefined,
    };
    // Each limit its own keys unless the user names a prefix: a login limit and an API limit on
    // the same user id shared one key (five logins refused the user's API calls for a minute).
    // The name as escape() spells it (letters, digits, @*_+-./ and %XX or %uXXXX: one-to-one, a
    // lone surrogate too), so no two names share a prefix and none opens a Cluster hash tag.
    // A name escape() spells longer than 100 (a 200-character CJK name is 1,200) goes as '~' and
    // the SHA-1 of that spelling (not of the name: UTF-8 makes every lone surrogate U+FFFD): the
    // prefix stays within the 200 of an explicit one, and escape() never writes '~'. A name with
    // a secret hidden goes the same way, from the name as given: its own keys, not its secret.
    let name = escape(given);
    if (name.length > 100 || given !== o.name) name = `~${createHash('sha1').update(name).digest('base64url')}`;
    this.#prefix = o.prefix ?? `holdfast:rl:gcra:${o.limit}:${o.interval}:${this.#burst}:${name}:`;
    // Unique across processes by the random prefix, within one by the counter: no randomness per call.
    const prefix = randomBytes(12).toString('base64url');
    let seq = 0;
    this.#requestId = o.requestId ?? (() => `${prefix}${(++seq).toString(36)}`);
  }

  /** The Redis key of a limit key: hashed, so no user character can break the hash tag. */
  keyOf(key: string): string {
    let hashed = this.#keys.get(key);
    if (hashed === undefined) {
      hashed = `${this.#prefix}{${hashKey(createHash('sha1'), key).digest('base64url')}}`;
      // A small cache of recent keys: hashing is most of the client-side cost of a decision. Not
      // of long ones: 1,000 keys a client sent in 16 kB headers held 16 MB.
      if (key.length > 64) return hashed;
      if (this.#keys.size >= 1_000) this.#keys.clear();
      this.#keys.set(key, hashed);
    }
    return hashed;
  }

  take(key?: string, cost = 1): Promise<RateDecision> {
    try {
      checkCost(this.name, cost, this.#burst);
      key = this.own(key);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#send(key, cost).then(
      (d) => {
        const { reply } = d;
        // An integer: remaining + (burst + 1) x TAT if >= 0, else -retryAfter.
        // Not a number (a proxy or a stand-in answering something else; '' and null, which
        // Number() reads as 0, too): no decision was made, a store error as an unreachable Redis
        // is (let through or refused by onRedisError). Read as a refusal, it said retryAfter NaN.
        const t = typeof reply;
        const n =
          t === 'number' || t === 'bigint' || (t === 'string' && (reply as string).trim()) ? Number(reply) : NaN;
        if (!(n > -Infinity)) return this.#unreachable(new Error('Redis sent a malformed reply'));
        if (this.#failedAt !== undefined && d.n > this.#failedAt) this.#failedAt = undefined;
        this.#line.client.answered(d.n, this.o.commandTimeout);
        if (n >= 0) {
          // Past 2^53 (or not finite) it is no reply of this script's: what is left, TAT unknown.
          const units = n <= MAX_REPLY ? n % (this.#burst + 1) : n;
          // At most what the key holds less this cost (a reply past it is not this script's: a
          // proxy or a stand-in answering): more said Remaining 1e15 beside Limit 10.
          const left = Math.min(units, this.#burst - cost);
          this.allowedCount++;
          // Until the key owes nothing: within one unit's time.
          const reset = Math.max(0, Math.ceil((this.#burst - left) * this.#emission - 1e-6));
          return new Taken(left, reset, n <= MAX_REPLY ? ((n - units) / (this.#burst + 1)) * this.#unit : 0);
        }
        // Refused after waiting -n, `cost` would fit: what is left now is what fits in (cost x emission - wait).
        return (
          // Refused after waiting -n, `cost` would fit: what is left now is what fits in (cost x emission - wait).
          this.decided(
            false,
            Math.max(1, -n),
            Math.max(0, Math.floor(cost + n / this.#emission + 1e-9)),
            (this.#burst - cost) * this.#emission - n,
          )
        );
      },
      (error: unknown) => this.#unreachable(error),
    );
  }

  /**
   * One EVALSHA (an EVAL after a restart flushed the script), bounded by `commandTimeout`. It is
   * sent only on a ready connection: queued in ioredis' offline queue during an outage, a
   * decision we already gave up on would still take from the limit when the connection returns.
   */
  #send(key: string, cost: number): Promise<Decision> {
    const { client } = this.o;
    if (client.status === 'end')
      return Promise.reject(new Error('the Redis client ended (quit, disconnect, or ioredis gave up)'));
    const tat = this.keyOf(key);
    // Only the keys (a marker only with a resend window, the give-back clock only for a decision
    // that may be given back); the increment and its expiry only for a cost other than 1.
    const args = this.#marked ? ['2', tat, `${tat}:r:${this.#requestId()}`] : ['1', tat];
    if (this.givable || this.#line.late !== undefined) {
      args.push(`${tat}:j`);
      args[0] = String(args.length - 1);
    }
    if (cost !== 1) args.push(String(this.#emission * cost), String(Math.max(1, Math.ceil(this.#emission * cost))));
    return new Promise((resolve, reject) => new Decision(this.#line, args, resolve, reject));
  }

  /**
   * A decision answered after its caller was refused (`closed`: it timed out): if it took from
   * the limit, give it back, since the call never ran. (`open` let the call run: it counts.)
   */
  #refund(args: readonly string[], reply: unknown): void {
    const n = Number(reply);
    if (!(n >= 0 && n <= MAX_REPLY)) return;
    // The increment follows the keys when the cost was not 1.
    const tat = ((n - (n % (this.#burst + 1))) / (this.#burst + 1)) * this.#unit;
    this.#giveBackTo(args[1] as string, args[Number(args[0]) + 1] ?? String(this.#emission), tat);
  }

  protected giveBack(key: string | undefined, cost: number, _at: number, _state: unknown, d: RateDecision) {
    // Not queued in ioredis' offline queue for a connection that may not come back: kept, the limit errs strict.
    if (this.o.client.status !== 'ready') return undefined;
    this.#giveBackTo(this.keyOf(this.own(key)), String(this.#emission * cost), Taken.tatOf(d));
    // The script moves the key's TAT back by cost units: `cost` more left, whole that much sooner.
    // Not awaited: one lost on its way leaves the key `cost` stricter than this says (a header
    // shown once), where kept as decided a limit of 1 an hour said reset=3600 of a whole one.
    return {
      remaining: Math.min(this.#burst, d.remaining + cost),
      reset: Math.max(0, Math.ceil(d.reset - cost * this.#emission - 1e-6)),
    };
  }

  /**
   * One give-back script, marked with a request id of its own so that a resend gives back once,
   * whether decisions are marked or not (before, `resendWindow: 0` gave nothing back).
   */
  #giveBackTo(tat: string, step: string, taken: number): void {
    // Its TAT unknown (a resent decision answered from its marker): nothing to give, strict.
    if (!(taken > 0)) return;
    const { client } = this.o;
    // Kept as long as the resend window, and at least 10 s (give-backs are rare: no need to save it).
    const keep = Math.max(this.o.resendWindow ?? 0, 10_000);
    const asked = this.common.elapsed();
    // The server's clock first (the key's own node in a Cluster), for the give-back's deadline:
    // `keep` from now (its second rounded down), less what this answer took.
    client
      .call('eval', serverNow, '1', tat)
      .then((now) => {
        const left = keep - (this.common.elapsed() - asked);
        if (left <= 0 || client.status !== 'ready') return;
        const marker = `${tat}:g:${this.#requestId()}`;
        return client.call(
          'eval',
          refundSource,
          '3',
          tat,
          marker,
          `${tat}:j`,
          step,
          String(keep),
          String(Number(now) * 1000 + left),
          String(taken),
          String(this.#hold),
        );
      })
      .catch(() => {});
  }

  #unreachable(error: unknown): RateDecision {
    this.#storeErrors++;
    this.#failedAt = this.#line.client.made;
    const failOpen = this.o.onRedisError === 'open';
    const { bus, clock } = this.common;
    if (bus.wants('rateLimit.storeError')) {
      bus.emit({
        type: 'rateLimit.storeError',
        source: this.name,
        time: clock.now(),
        code: errorLabel(error),
        failOpen,
      });
    }
    if (failOpen) {
      this.allowedCount++;
      return UNKNOWN;
    }
    const reason = error instanceof Error ? error.message : String(error);
    throw new LimitStoreUnavailableError(this.name, reason, { cause: error });
  }

  snapshot(): RedisRateLimiterSnapshot {
    return {
      name: this.name,
      algorithm: 'gcra',
      limit: this.o.limit,
      interval: this.o.interval,
      keys: 0,
      allowed: this.allowedCount,
      rejected: this.rejectedCount,
      storeErrors: this.#storeErrors,
      status:
        this.o.client.status === 'ready' && this.#line.client.answers(this.#failedAt, this.o.commandTimeout)
          ? 'pass'
          : 'warn',
    };
  }
}

/**
 * An allowed decision, with the TAT it left on Redis (ms of the server's clock, rounded down; 0
 * when not known), private: a give-back needs it, the caller never sees it.
 */
class Taken implements RateDecision {
  readonly allowed = true;
  readonly retryAfter = 0;
  readonly #tat: number;

  constructor(
    readonly remaining: number,
    readonly reset: number,
    tat: number,
  ) {
    this.#tat = tat;
  }

  static tatOf(d: RateDecision): number {
    return #tat in d ? d.#tat : 0;
  }
}

/**
 * What every limiter on one client shares (one per client: {@link onClient}).
 *
 * Decisions waiting for a ready connection, of every limiter on the client: one `ready` listener
 * however many wait (a listener each would pass Node's limit of 10 at the first busy outage and
 * warn of a leak; one per limiter did so for a service with eleven limits on its one client). A
 * limiter's dispose() leaves it alone: its waiting decisions end by their own deadlines.
 *
 * And which decisions were answered, for `status`: `warn` while a limiter's own last decision
 * failed (a frozen Redis keeps its connection `ready` while every decision times out). Not the
 * client's last decision: a limiter whose callers were just refused (a 50 ms timeout) showed
 * `pass` because a neighbour's (2 s) was answered late, and a healthy one `warn` because a
 * neighbour failed. Its own failure is cleared by its own answer, or by a neighbour's decision
 * made after that failure and answered within this limiter's own `commandTimeout` (a neighbour's
 * is at most its own): Redis answers in time again. A `warn`, not a `fail`: every instance shares
 * the store, and failing readiness would take them all out of rotation while `onRedisError`
 * already says what calls get.
 */
class OnClient {
  readonly #waiting = new Set<Decision>();
  /** Decisions made on the client so far: each is numbered by it. */
  made = 0;
  /** The latest-made decision answered (its number), and its limiter's `commandTimeout`. */
  #answered = 0;
  #within = Infinity;

  constructor(readonly client: RedisClient) {}

  answered(n: number, within: number): void {
    if (n > this.#answered) {
      this.#answered = n;
      this.#within = within;
    }
  }

  /** Whether a limiter whose last decision failed when `failedAt` were made (if it did) is answered again. */
  answers(failedAt: number | undefined, timeout: number): boolean {
    return failedAt === undefined || (this.#answered > failedAt && this.#within <= timeout);
  }

  readonly #onReady = (): void => {
    const all = [...this.#waiting];
    this.#waiting.clear();
    for (const d of all) d.send();
  };

  add(d: Decision): void {
    if (this.#waiting.size === 0) this.client.once('ready', this.#onReady);
    this.#waiting.add(d);
  }

  delete(d: Decision): void {
    if (this.#waiting.delete(d) && this.#waiting.size === 0) this.client.removeListener('ready', this.#onReady);
  }
}

/** One {@link OnClient} per client, shared by every limiter on it. */
const clients = new WeakMap<object, OnClient>();
const onClient = (client: RedisClient): OnClient => {
  let on = clients.get(client);
  if (on === undefined) clients.set(client, (on = new OnClient(client)));
  return on;
};

/** What every decision of one limiter shares. */
interface Line {
  readonly client: OnClient;
  /** Every decision's `commandTimeout` behind one timer, not a timer each. */
  readonly deadlines: DeadlineQueue<Decision>;
  readonly timeout: number;
  /** The limiter's script, and its SHA-1 for EVALSHA. */
  readonly source: string;
  readonly sha: string;
  /** Told of an answer that came after the decision gave up (timed out). */
  readonly late: ((args: readonly string[], reply: unknown) => void) | undefined;
}

/**
 * One decision in flight: its EVALSHA, its timeout, and waiting for a connection if there is
 * none. A class rather than closures: a decision allocates one object, not one function per step.
 */
class Decision {
  #settled = false;
  readonly #deadline: Deadline<Decision>;
  /** Waiting for a ready connection (only when there was none). */
  #waits = false;
  /** Its number on the client (made after every decision of a lower one). */
  readonly n: number;
  /** Redis' reply, once answered. */
  reply: unknown;

  constructor(
    readonly line: Line,
    /** The number of keys, KEYS (tat, request-id marker with a resend window), then ARGV. */
    readonly args: string[],
    readonly resolve: (d: Decision) => void,
    readonly reject: (error: unknown) => void,
  ) {
    // Our own deadline: a hung server or a reconnect loop must not hold the call.
    this.#deadline = line.deadlines.add(this);
    this.n = ++line.client.made;
    const { status } = line.client.client;
    if (status === 'ready' || status === 'wait') this.send();
    else {
      this.#waits = true;
      line.client.add(this);
    }
  }

  send(): void {
    if (this.#settled) return;
    this.#waits = false;
    const { args, line } = this;
    const { client } = line.client;
    client.call('evalsha', line.sha, ...args).then(
      (reply) => this.#answer(reply),
      (error: unknown) => {
        if (error instanceof Error && error.message.startsWith('NOSCRIPT'))
          client.call('eval', line.source, ...args).then(
            (reply) => this.#answer(reply),
            (e: unknown) => this.#fail(e),
          );
        else this.#fail(error);
      },
    );
  }

  #answer(reply: unknown): void {
    if (this.#finish()) {
      this.reply = reply;
      this.resolve(this);
    } else this.line.late?.(this.args, reply);
  }

  #fail(error: unknown): void {
    if (this.#finish()) this.reject(error);
  }

  expire(): void {
    const { client } = this.line.client;
    const why =
      client.status === 'ready'
        ? `Redis did not answer within ${this.line.timeout} ms`
        : `Redis is not connected (client status "${client.status}")`;
    if (this.#finish()) this.reject(new Error(why));
  }

  /** Settles once: true the first time. */
  #finish(): boolean {
    if (this.#settled) return false;
    this.#settled = true;
    this.line.deadlines.cancel(this.#deadline);
    if (this.#waits) this.line.client.delete(this);
    return true;
  }
}

import type { Buffer } from 'node:buffer';
import { busOption, clockOption, fnOption, nameOption, positiveDurationOption } from '@holdfast/core';
import { z } from 'zod';
import type { IdempotencyStore } from './store.js';

/** Node's timers overflow past this many milliseconds. */
const MAX_TIMER_MS = 2_147_483_647;

const timerDuration = positiveDurationOption.max(MAX_TIMER_MS);

/** Validates the options of {@link memoryStore}; {@link MemoryStoreOptions} is inferred from it. */
export const memoryStoreOptionsSchema = z.strictObject({
  /**
   * The most records kept. When full, expired records go first, then the least recently used,
   * even before its ttl (a repeat of its key then runs again: size it above the keys a ttl
   * brings); a record whose lease is still running is never evicted.
   * @default 10_000
   */
  maxEntries: z.number().int().positive().default(10_000),
  /**
   * The most bytes of records kept (keys, fingerprints and stored values or responses, as
   * encoded). When over, expired records go first, then the least recently used completed ones
   * (even before their ttl); one record larger than this is refused with `E_IDEMPOTENCY_VALUE`.
   * @default 67_108_864 (64 MiB)
   */
  maxBytes: z.number().int().positive().default(67_108_864),
  /** How often expired records are swept out (an unref'd timer). @default 60_000 */
  sweepInterval: timerDuration.default(60_000),
  /** @default the real clock */
  clock: clockOption.optional(),
  /**
   * Opt-in, in a cluster worker (`node:cluster`, PM2's cluster mode) or a worker thread
   * (`node:worker_threads`): records stay in this worker, and a retry that another worker gets
   * runs the effect again. Without it, `memoryStore()` refuses to be made in either; use
   * `redisStore()` to share records.
   * @default false
   */
  processLocal: z.boolean().default(false),
});

/** Options of {@link memoryStore}. */
export type MemoryStoreOptions = z.input<typeof memoryStoreOptionsSchema>;

const onStoreErrorOption = z.enum(['fail-closed', 'fail-open']);

const redisClientOption = z.custom<RedisClient>(
  (v) =>
    typeof v === 'object' &&
    v !== null &&
    typeof (v as RedisClient).callBuffer === 'function' &&
    typeof (v as RedisClient).once === 'function' &&
    typeof (v as RedisClient).status === 'string',
  { error: 'must be an ioredis client (new Redis(), new Redis.Cluster() or a Sentinel-backed Redis)' },
);

/** The part of an ioredis client (Redis, Cluster, Sentinel-backed) the Redis store uses. */
export interface RedisClient {
  /** ioredis connection status; `end` means the client was closed for good. */
  readonly status: string;
  /** Sends one command and resolves to its reply, bulk strings as Buffers. */
  callBuffer(...args: [command: string, ...args: (string | Buffer | number)[]]): Promise<unknown>;
  /** Calls `listener` once, when the connection is ready, or when the client ended for good (`end`). */
  once(event: 'ready' | 'end', listener: () => void): unknown;
  /** Removes a `ready` or `end` listener the store added. */
  removeListener(event: 'ready' | 'end', listener: () => void): unknown;
  /** A pipeline (used with `waitForReplicas`, so WAIT reaches the node that took the write). */
  pipeline?(): RedisPipeline;
}

/** The part of an ioredis pipeline the Redis store uses. */
export interface RedisPipeline {
  /** Queues one command (its reply as Buffers); the store queues a script and a `WAIT`. */
  callBuffer(...args: [command: string, ...args: (string | Buffer | number)[]]): RedisPipeline;
  /** Sends the queued commands in one round trip; one `[error, reply]` per command. */
  exec(): Promise<[Error | null, unknown][] | null>;
}

/** Validates the options of {@link redisStore}; {@link RedisStoreOptions} is inferred from it. */
export const redisStoreOptionsSchema = z.strictObject({
  /** An ioredis client: standalone, `Redis.Cluster`, or connected through Sentinel. */
  client: redisClientOption,
  /**
   * Prepended to every Redis key. The idempotency key itself is hashed (SHA-256) into a
   * `{hash tag}`, so any characters are safe and a record stays in one Cluster slot. A prefix
   * may not contain braces (they would end or move the hash tag), spaces or control characters.
   * @default 'holdfast:idem:'
   */
  prefix: z
    .string()
    .max(200)
    .regex(/^[^{}\s\p{Cc}]*$/u, 'must not contain braces, spaces or control characters')
    .default('holdfast:idem:'),
  /**
   * The largest record (stored value or response, encoded) sent to Redis; a larger one is
   * refused before it is sent, with `E_IDEMPOTENCY_VALUE` naming its size.
   * @default 4_194_304 (4 MiB)
   */
  maxValueBytes: z.number().int().positive().default(4_194_304),
  /**
   * Durability: after each write (a claim, a completion) wait with `WAIT` until `replicas`
   * replicas acknowledged it, for at most `timeoutMs`; fewer is a store failure. Without it a
   * write acknowledged by a master that dies before replicating is lost in a failover.
   * @default undefined (do not wait)
   */
  waitForReplicas: z
    .strictObject({
      replicas: z.number().int().positive(),
      timeoutMs: timerDuration,
    })
    .optional(),
  /**
   * How long one command may take before it fails with `E_STORE_UNAVAILABLE`. Enforced by our
   * own timer, whatever the client's `commandTimeout`, offline queue or retry settings are.
   * @default 2_000
   */
  commandTimeout: timerDuration.default(2_000),
  /**
   * What `idempotent()` does when a claim fails: `fail-closed` throws `E_STORE_UNAVAILABLE`
   * and does not run the function; `fail-open` runs it unprotected and reports `storeError`.
   * @default 'fail-closed'
   */
  onStoreError: onStoreErrorOption.default('fail-closed'),
  /**
   * Claim on a Redis that may evict keys under memory pressure (`maxmemory` set and a
   * `maxmemory-policy` other than `noeviction`). A running claim is a key with a TTL, among the
   * first `volatile-ttl` and `volatile-lru` evict: gone, a second caller runs the function beside
   * the first. By default the store reads `INFO memory` on each new connection and refuses such a
   * Redis (`E_STORE_UNAVAILABLE`, naming the policy).
   * @default false
   */
  allowEviction: z.boolean().default(false),
  /** Shown in error messages. @default 'redisStore' */
  name: nameOption.default('redisStore'),
  /** Times the command timeout. @default the real clock */
  clock: clockOption.optional(),
});

/** Options of {@link redisStore}. */
export type RedisStoreOptions = z.input<typeof redisStoreOptionsSchema>;

const NOT_A_STORE = 'must be an IdempotencyStore (memoryStore(), redisStore() or your own)';

/**
 * A store is taken as it is (never copied: a class's methods live on its prototype). Each member
 * it has is checked, by name: a custom store's `extend: 5` renewed nothing, without a word.
 */
const storeOption = z
  .custom<IdempotencyStore>((v) => typeof v === 'object' && v !== null, { error: NOT_A_STORE })
  .superRefine((store, ctx) => {
    const s = store as unknown as Record<string, unknown>;
    const methods = ['claim', 'complete', 'release'] as const;
    // Nothing a store has: not one at all, said as such.
    if (methods.every((m) => s[m] === undefined)) return void ctx.addIssue({ code: 'custom', message: NOT_A_STORE });
    for (const m of methods) {
      if (typeof s[m] !== 'function') ctx.addIssue({ code: 'custom', path: [m], message: 'must be a function' });
    }
    if (s.extend !== undefined && typeof s.extend !== 'function') {
      ctx.addIssue({
        code: 'custom',
        path: ['extend'],
        message: 'must be a function, or absent (a store without extend keeps fixed leases)',
      });
    }
    if (s.onStoreError !== undefined && !onStoreErrorOption.safeParse(s.onStoreError).success) {
      ctx.addIssue({
        code: 'custom',
        path: ['onStoreError'],
        message: "must be 'fail-closed' or 'fail-open', or absent",
      });
    }
  });

/** Validates the options of {@link idempotent}; {@link IdempotentOptions} is inferred from it. */
export const idempotentOptionsSchema = z.strictObject({
  /** Where records live. */
  store: storeOption,
  /** The idempotency key of an input, e.g. `(msg) => msg.id`. Computed before the function runs. */
  key: fnOption<(input: never) => string>(),
  /**
   * What must match for a repeat to be a replay. Computed before the function runs, so a
   * function that mutates its input cannot change it.
   * @default fingerprintOf(input): SHA-256 of the input's canonical JSON
   */
  fingerprint: fnOption<(input: never) => string>().optional(),
  /**
   * How long a call owns its key without news from it. While the run is alive its lease is
   * renewed every `leaseMs / 3` (on a store with `extend`, as `memoryStore()` and `redisStore()`
   * have), so a slow run keeps its key; if its process dies or freezes, the next attempt takes
   * over `leaseMs` after the last renewal. On a store without `extend`, set it above the
   * function's longest run.
   * @default 60_000
   */
  leaseMs: timerDuration.default(60_000),
  /**
   * The longest a run may keep its key by renewing its lease. Past it, the run's verdict is
   * stored so that nothing runs twice: `idempotent()` stores `aborted` and aborts `ctx.signal`
   * (a repeat gets `E_IDEMPOTENCY_ABORTED`); the HTTP middleware stores the response-lost
   * problem (a retry gets it). A hung run then blocks its key for `ttlMs`, not until its process
   * dies. Set it to `leaseMs` or less to renew nothing (a fixed lease, as on a store without `extend`).
   * Up to 1e15 ms: not a timer (runs are measured against it at each renewal).
   * @default 600_000 (10 minutes)
   */
  maxRunMs: z.number().finite().positive().max(1e15).default(600_000),
  /** How long a completed result is replayed, up to 1e15 ms (not a timer: 30 days is fine). @default 86_400_000 (24 h) */
  ttlMs: z.number().finite().positive().max(1e15).default(86_400_000),
  /**
   * Wait for a running duplicate to finish instead of failing at once with
   * `E_IDEMPOTENCY_CONFLICT`: poll every `interval` ms, for at most `timeout` ms.
   * @default undefined (do not wait)
   */
  wait: z
    .strictObject({
      timeout: timerDuration,
      /** @default 100 */
      interval: timerDuration.default(100),
    })
    .optional(),
  /**
   * Keeps this function's records apart from other functions' on the same store: its keys are
   * stored as `namespace:key`. A store given to more than one `idempotent()` needs a different
   * one on each (see "One store, several functions" in the README); without, two functions keyed
   * alike (both by an order id) would replay each other's results.
   * @default undefined (keys stored as they are)
   */
  namespace: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[^:]*$/, 'must not hold a colon (it ends the namespace in the stored key)')
    .optional(),
  /**
   * How long storing a result is retried when the store fails (a failover, a lost reply), fenced
   * by the run's token; the caller waits for it. 0: tried once. Given up, the key stays in
   * progress until its lease ends, and a retry then runs the function again.
   * @default 10_000
   */
  completeTimeoutMs: z.number().finite().min(0).max(MAX_TIMER_MS).default(10_000),
  /** Shown as `source` on its events and in error messages. @default 'idempotent' */
  name: nameOption.default('idempotent'),
  /** @default the global bus */
  bus: busOption.optional(),
  /** Times waits. @default the real clock */
  clock: clockOption.optional(),
});

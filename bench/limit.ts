import { readFileSync } from 'node:fs';
import { fallback, hedge } from '@holdfast/core';
import { adaptiveConcurrency, adaptiveThrottle, bulkhead, slidingWindow, tokenBucket } from '@holdfast/limit';
import { redisRateLimiter } from '@holdfast/limit/redis';
import Bottleneck from 'bottleneck';
import { bulkhead as cockatielBulkhead } from 'cockatiel';
import { Redis } from 'ioredis';
import pLimit from 'p-limit';
import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible';
import { redisAvailable, startRedis, stopAllRedis } from '../test/support/redis.js';
import { compare, median, pin, printRows } from './harness.js';

const bare = async () => 1;
const BATCH = 100;

/** Per-call cost of each limit against its nearest peer, in one process. */
export async function benchLimit(): Promise<void> {
  const opts = { policies: false } as const;

  // Free slots: what a limit adds to a call that is let straight through.
  const hfBulkhead = bulkhead({ maxConcurrent: 10, maxQueue: 1_000, ...opts });
  const ckBulkhead = cockatielBulkhead(10, 1_000);
  const plimit = pLimit(10);
  const bottleneck = new Bottleneck({ maxConcurrent: 10 });
  const adaptive = adaptiveConcurrency({ algorithm: 'gradient2', initialLimit: 1_000, ...opts });
  const throttle = adaptiveThrottle(opts);
  const hedged = hedge({ delay: 1_000, safe: true, ...opts });
  const fb = fallback({ value: 0 });
  await compare({
    title: 'limit: one call through a limit with room (sequential)',
    baseline: 'bare call',
    calls: 1_000,
    pairs: [
      ['holdfast bulkhead', 'cockatiel bulkhead'],
      ['holdfast bulkhead', 'p-limit'],
    ],
    variants: [
      { name: 'bare call', call: bare },
      { name: 'holdfast bulkhead', call: () => hfBulkhead.execute(bare) },
      { name: 'cockatiel bulkhead', call: () => ckBulkhead.execute(bare) },
      { name: 'p-limit', call: () => plimit(bare) },
      { name: 'holdfast adaptiveConcurrency', call: () => adaptive.execute(bare) },
      { name: 'holdfast adaptiveThrottle', call: () => throttle.execute(bare) },
      { name: 'holdfast hedge (not due)', call: () => hedged.execute(bare) },
      { name: 'holdfast fallback (not used)', call: () => fb.execute(bare) },
    ],
  });

  // Contention: 100 calls at once through 10 slots, 90 of them queued.
  const batch = (run: (fn: () => Promise<number>) => Promise<number>) => () =>
    Promise.all(Array.from({ length: BATCH }, () => run(bare)));
  await compare({
    title: `limit: ${BATCH} concurrent calls through 10 slots (figure per batch)`,
    baseline: 'bare batch',
    calls: 20,
    pairs: [
      ['holdfast bulkhead', 'cockatiel bulkhead'],
      ['holdfast bulkhead', 'p-limit'],
    ],
    variants: [
      { name: 'bare batch', call: batch((fn) => fn()) },
      { name: 'holdfast bulkhead', call: batch((fn) => hfBulkhead.execute(fn)) },
      { name: 'cockatiel bulkhead', call: batch((fn) => ckBulkhead.execute(fn)) },
      { name: 'p-limit', call: batch((fn) => plimit(fn)) },
    ],
  });

  // Bottleneck schedules each job on a timer (about 10 ms a call here): compared on its own, few calls.
  await compare({
    title: 'limit: one call through a limit with room, against bottleneck (sequential)',
    baseline: 'bare call',
    calls: 10,
    rounds: 3,
    time: 300,
    pairs: [['holdfast bulkhead', 'bottleneck']],
    variants: [
      { name: 'bare call', call: bare },
      { name: 'holdfast bulkhead', call: () => hfBulkhead.execute(bare) },
      { name: 'bottleneck', call: () => bottleneck.schedule(bare) },
    ],
  });

  // In-process rate limits, every call allowed, 1,000 keys.
  const huge = 1e9;
  const bucket = tokenBucket({ limit: huge, ...opts });
  const window = slidingWindow({ limit: huge, ...opts });
  const rlf = new RateLimiterMemory({ points: huge, duration: 1 });
  let k = 0;
  const key = () => `user-${k++ % 1_000}`;
  await compare({
    title: 'limit: in-process rate limit decision, 1,000 keys',
    baseline: 'bare call',
    calls: 1_000,
    pairs: [
      ['holdfast tokenBucket.execute', 'rate-limiter-flexible Memory'],
      ['holdfast slidingWindow.execute', 'rate-limiter-flexible Memory'],
    ],
    variants: [
      { name: 'bare call', call: bare },
      { name: 'holdfast tokenBucket.execute', call: () => bucket.execute(bare, { key: key() }) },
      { name: 'holdfast slidingWindow.execute', call: () => window.execute(bare, { key: key() }) },
      { name: 'rate-limiter-flexible Memory', call: () => rlf.consume(key()).then(bare) },
    ],
  });
  await bottleneck.stop();
  await benchLimitRedis();
}

/** The Redis rate limiter against rate-limiter-flexible on one redis-server (`pnpm bench limit-redis` alone). */
export async function benchLimitRedis(): Promise<void> {
  const opts = { policies: false } as const;
  const huge = 1e9;
  let k = 0;
  const key = () => `user-${k++ % 1_000}`;
  if (!redisAvailable()) {
    console.log('\n(redis-server not found: Redis rate limit comparison skipped)');
    return;
  }
  const [server] = await startRedis(1);
  if (server === undefined) return;
  const client = new Redis(server.port, server.host);
  // The server on CPU 1 and this process on CPU 0, as the HTTP server benchmark does: a round
  // trip then costs the same wherever the scheduler would have put the two, and only the work
  // each side does differs.
  const unpin = pin(server.pid);
  console.log(`\n(Redis comparisons: ${unpin ? 'redis-server on CPU 1, this process on CPU 0' : 'CPUs not pinned'})`);
  try {
    await client.ping();
    // The default, like the peer, does not recognise a resent decision: no marker.
    const ours = redisRateLimiter({ client, limit: huge, ...opts });
    // Opted in: a marker per allowed decision, so that a resent one is counted once.
    const exact = redisRateLimiter({ client, limit: huge, resendWindow: 10_000, ...opts });
    const theirs = new RateLimiterRedis({ storeClient: client, points: huge, duration: 1, keyPrefix: 'rlf' });
    await compare({
      title: 'limit: Redis rate limit decision, same redis-server, 1,000 keys (sequential)',
      baseline: 'redis PING',
      calls: 100,
      rounds: 7,
      pairs: [
        ['holdfast redisRateLimiter (GCRA), default', 'rate-limiter-flexible Redis'],
        ['holdfast redisRateLimiter, resendWindow 10 s', 'rate-limiter-flexible Redis'],
      ],
      variants: [
        { name: 'redis PING', call: () => client.ping() },
        { name: 'holdfast redisRateLimiter (GCRA), default', call: () => ours.take(key()) },
        { name: 'holdfast redisRateLimiter, resendWindow 10 s', call: () => exact.take(key()) },
        { name: 'rate-limiter-flexible Redis', call: () => theirs.consume(key()) },
      ],
    });
    // Refusals: every key already spent (a limit of 1 a minute), so every decision is refused.
    const spent = redisRateLimiter({ client, limit: 1, interval: 60_000, prefix: 'spent:', ...opts });
    const spentExact = redisRateLimiter({
      client,
      limit: 1,
      interval: 60_000,
      prefix: 'spent10:',
      resendWindow: 10_000,
      ...opts,
    });
    const theirsSpent = new RateLimiterRedis({ storeClient: client, points: 1, duration: 60, keyPrefix: 'rlfspent' });
    const refuse = (take: () => Promise<unknown>) => () => take().catch(() => undefined);
    for (let i = 0; i < 1_000; i++) {
      await spent.take(key());
      await spentExact.take(key());
      await refuse(() => theirsSpent.consume(key()))();
    }
    await compare({
      title: 'limit: Redis rate limit decision, refused, same redis-server, 1,000 keys (sequential)',
      baseline: 'redis PING',
      calls: 100,
      rounds: 7,
      pairs: [
        ['holdfast redisRateLimiter (GCRA), default, refused', 'rate-limiter-flexible Redis, refused'],
        ['holdfast redisRateLimiter, resendWindow 10 s, refused', 'rate-limiter-flexible Redis, refused'],
      ],
      variants: [
        { name: 'redis PING', call: () => client.ping() },
        { name: 'holdfast redisRateLimiter (GCRA), default, refused', call: () => spent.take(key()) },
        { name: 'holdfast redisRateLimiter, resendWindow 10 s, refused', call: () => spentExact.take(key()) },
        { name: 'rate-limiter-flexible Redis, refused', call: refuse(() => theirsSpent.consume(key())) },
      ],
    });
    await cpuPerDecision(server.pid, [
      ['redis PING', () => client.ping()],
      ['holdfast redisRateLimiter (GCRA), default', () => ours.take(key())],
      ['holdfast redisRateLimiter, resendWindow 10 s', () => exact.take(key())],
      ['rate-limiter-flexible Redis', () => theirs.consume(key())],
      ['holdfast, default, refused', () => spent.take(key())],
      ['holdfast, resendWindow 10 s, refused', () => spentExact.take(key())],
      ['rate-limiter-flexible Redis, refused', refuse(() => theirsSpent.consume(key()))],
    ]);
  } finally {
    unpin?.();
    client.disconnect();
    await stopAllRedis();
  }
}

/**
 * CPU time per decision: the redis-server's main thread (its schedstat, ns) and this process
 * (`process.cpuUsage()`), each variant in turn, the order rotated, the median of 5 rounds. Time
 * on a CPU is what the work costs; a loaded machine adds waiting to the wall-clock figures above,
 * not to these. Linux only.
 */
async function cpuPerDecision(pid: number | undefined, variants: [string, () => Promise<unknown>][]): Promise<void> {
  const stat = `/proc/${pid}/task/${pid}/schedstat`;
  const serverNs = () => Number(readFileSync(stat, 'utf8').split(' ')[0]);
  try {
    serverNs();
  } catch {
    return;
  }
  const calls = 2_000;
  const server: Record<string, number[]> = {};
  const own: Record<string, number[]> = {};
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < variants.length; i++) {
      const [name, call] = variants[(i + round) % variants.length] as [string, () => Promise<unknown>];
      for (let j = 0; j < 200; j++) await call();
      const [s0, c0] = [serverNs(), process.cpuUsage()];
      for (let j = 0; j < calls; j++) await call();
      const c = process.cpuUsage(c0);
      (server[name] ??= []).push((serverNs() - s0) / calls);
      (own[name] ??= []).push(((c.user + c.system) * 1000) / calls);
    }
  }
  const fmt = (ns: number) => `${(ns / 1000).toFixed(2)} µs`;
  printRows(
    'limit: Redis decision, CPU time per decision (median of 5 rounds, 2,000 calls each)',
    ['variant', 'redis-server', 'this process'],
    variants.map(([name]) => [name, fmt(median(server[name] ?? [])), fmt(median(own[name] ?? []))]),
  );
}

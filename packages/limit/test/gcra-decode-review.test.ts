import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { type RedisClient, redisRateLimiter } from '../src/redis.js';

const TAKEN = Symbol.for('holdfast.limit.taken');

// The decision script packs the key's TAT after an allowed decision beside the units left
// (left + (burst + 1) x floor(TAT / unit)). Here the limiter's own script runs on a real Redis, its
// clock (TIME) replaced by a chosen instant, over the options zod accepts: the units left must be
// what the script computed, and the TAT the give-back is sent never above the one Redis stored
// (never loose), nor below it by a unit or more.
describe.skipIf(!redisAvailable())('GCRA reply decoding, the real script on real Redis at chosen instants', () => {
  let server: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
    client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 });
    client.on('error', () => {});
  }, 30_000);
  afterAll(async () => {
    client.disconnect();
    await stopAllRedis();
  });

  /** A client whose decision script reads `clock` for TIME, and that tells the TAT each give-back is sent. */
  function clocked(clock: { sec: number; usec: number }) {
    const sent: number[] = [];
    let wake = () => {};
    const fake: RedisClient = {
      get status() {
        return client.status;
      },
      call: (command: string, ...args: (string | number)[]) => {
        if (command === 'evalsha') return Promise.reject(new Error('NOSCRIPT (this test sends the source)'));
        const [source, ...rest] = args as string[];
        if (source?.includes('ARGV[4]')) {
          sent.push(Number(rest.at(-1)));
          wake();
          return Promise.resolve(0);
        }
        if (!source?.startsWith('local t')) return client.call(command, ...args); // the server's clock, for the deadline
        const timed = source.replace("redis.call('TIME')", `{'${clock.sec}','${clock.usec}'}`);
        return client.call(command, timed, ...rest);
      },
      once: (event, listener) => client.once(event, listener),
      removeListener: (event, listener) => client.removeListener(event, listener),
    };
    const next = () =>
      new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no give-back sent')), 2_000);
        wake = () => {
          clearTimeout(timer);
          resolve(sent.at(-1) as number);
        };
      });
    return { fake, next };
  }

  const options = fc
    .record({
      limit: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.integer({ min: 1, max: 1_000_000_000 })),
      interval: fc.oneof(
        fc.integer({ min: 1, max: 5_000 }),
        fc.double({ min: 1, max: 1e15, noNaN: true }),
        fc.constantFrom(1, 1_000, 60_000, 3_600_000, 86_400_000),
      ),
      burst: fc.oneof(
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 1_000_000_000 }),
        fc.constantFrom(1, 999, 1_000, 1_023, 1_024, 1_025, 1e6, 1e9),
      ),
    })
    .filter((o) => (o.interval * o.burst) / o.limit <= 1e15);

  // Past about 4,000 a ms the float clock's rounding (about 2^-12 ms at today's ms since 1970) is
  // several units: the script's units left came out above the burst, spilled into the TAT's
  // place, and the client read 975 left of a fresh burst of 1,000,000 (and a TAT above the real one).
  it('a limit of 1e9 per 100 ms (burst 1e6): a fresh key says 999,999 left, on the real clock', async () => {
    const rl = redisRateLimiter({ client, limit: 1e9, interval: 100, burst: 1e6, policies: false, prefix: 'fast:' });
    for (const key of ['a', 'b', 'c']) expect((await rl.take(key)).remaining).toBeGreaterThan(999_000);
  });

  it('units left exact, TAT never above the stored one and within a unit of it (400 cases)', async () => {
    let n = 0;
    const worst = { below: 0, unit: 0 };
    await fc.assert(
      fc.asyncProperty(
        options,
        fc.integer({ min: 1_600_000_000, max: 8_000_000_000 }),
        fc.integer({ min: 0, max: 999_999 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        async (o, sec, usec, owed, costShare) => {
          const clock = { sec, usec };
          const { fake, next } = clocked(clock);
          const prefix = `dec:${n++}:`;
          const rl = redisRateLimiter({ client: fake, ...o, policies: false, prefix });
          const now = sec * 1000 + usec / 1000;
          const emission = o.interval / o.limit;
          const cost = Math.max(1, Math.ceil(costShare * o.burst));
          // The key owes some of its tolerance less this cost's (so the decision is allowed).
          const tat = now + owed * emission * (o.burst - cost);
          const key = (rl as unknown as { keyOf(k: string): string }).keyOf('k');
          if (owed > 0) await client.set(key, String(tat), 'PX', 60_000);
          let undo = () => {};
          const hook = { [TAKEN]: (u: () => void) => (undo = u) };
          const d = await rl.take('k', cost);
          // At the edge of the tolerance the float clock may refuse it: not what this checks.
          fc.pre(d.allowed);
          // A key owed under a ms expires (PX 1) before it is read, on the real clock: not checked.
          const stored = Number(await client.get(key));
          fc.pre(stored > 0);
          const left = Math.floor((now + emission * o.burst - stored) / emission);
          expect(d.remaining).toBe(Math.min(left, o.burst - cost));
          // Again through execute, for a give-back (a second decision on the same instant).
          await client.set(key, String(tat), 'PX', 60_000);
          if (owed === 0) await client.del(key);
          const ran = await rl.execute(() => true, { key: 'k', cost, ...hook } as never).catch(() => false);
          fc.pre(ran);
          const stored2 = Number(await client.get(key));
          fc.pre(stored2 > 0);
          const sent = next();
          undo();
          const told = await sent;
          expect(told).toBeLessThanOrEqual(stored2);
          const unit = stored2 - told;
          worst.below = Math.max(worst.below, unit);
          await client.del(key);
          // Within a unit of `#unit` ms: 1 up to bursts in the hundreds, 2^k above.
          const most = (2 ** 43 + emission * o.burst) * (o.burst + 1);
          const size = 2 ** Math.max(0, Math.ceil(Math.log2(most / 2 ** 53)));
          worst.unit = Math.max(worst.unit, size);
          expect(unit).toBeLessThan(size);
        },
      ),
      { numRuns: 400 },
    );
    console.log('decode: worst TAT told below the stored one', worst.below, 'ms; largest unit', worst.unit, 'ms');
  }, 120_000);
});

import type { AddressInfo } from 'node:net';
import { pipeline } from '@holdfast/core';
import express from 'express';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { loadShedding } from '../src/express.js';
import { slidingWindow, tokenBucket } from '../src/index.js';
import { type RedisClient, redisRateLimiter } from '../src/redis.js';
import { conforms } from './gcra.js';

const TAKEN = Symbol.for('holdfast.limit.taken');

// A give-back is a Redis script like a decision: ioredis resends it after a reconnect when its
// reply was lost. Resent, it must give back once, or a client gets more than the limit.
describe.skipIf(!redisAvailable())('a give-back to Redis resent after a lost reply', () => {
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

  /**
   * A client whose commands reach the server twice (the reply of the first is lost, ioredis
   * resends): every command, or only those `twice(command)` picks.
   */
  function resending(resent: (command: string) => boolean = () => true) {
    let executed = 0;
    let wake = () => {};
    const twice = {
      get status() {
        return client.status;
      },
      call: async (command: string, ...args: (string | number)[]) => {
        if (!resent(command)) return client.call(command, ...args);
        await client.call(command, ...args);
        executed++;
        const again = await client.call(command, ...args);
        executed++;
        wake();
        return again;
      },
      once: (event: 'ready', listener: () => void) => client.once(event, listener),
      removeListener: (event: 'ready', listener: () => void) => client.removeListener(event, listener),
    };
    const reached = (n: number) =>
      new Promise<void>((resolve) => {
        wake = () => executed >= n && resolve();
        wake();
      });
    return { twice, reached, executed: () => executed };
  }

  async function serve(policy: Parameters<typeof loadShedding>[0]['policy']): Promise<string> {
    const app = express();
    app.use(loadShedding({ policy, key: () => 'k' }));
    app.get('/x', (_req, res) => void res.send('ok'));
    const listening = app.listen(0, '127.0.0.1');
    await new Promise((r) => listening.once('listening', r));
    closers.push(() => new Promise((r) => listening.close(r)));
    return `http://127.0.0.1:${(listening.address() as AddressInfo).port}/x`;
  }
  const closers: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const close of closers.splice(0)) await close();
  });

  it('resendWindow set (opt-in): a refused request whose decision and give-back are resent gets back what it took once, not twice', async () => {
    const prefix = 'giveback:resend:';
    const direct = redisRateLimiter({ client, limit: 10, interval: 60_000, policies: false, prefix });
    for (let i = 0; i < 3; i++) expect((await direct.take('k')).allowed).toBe(true); // 7 left
    const { twice, reached } = resending();
    const shared = redisRateLimiter({
      client: twice,
      limit: 10,
      interval: 60_000,
      resendWindow: 10_000,
      policies: false,
      prefix,
    });
    const total = tokenBucket({ limit: 1, interval: 60_000, key: () => 'all', policies: false });
    total.take();
    const url = await serve(pipeline(shared, total));
    expect((await fetch(url)).status).toBe(429); // took 1 (6 left), the total refused: given back (7 left)
    await reached(2); // the decision twice; no give-back (its TAT not known)
    // 7 left before the request. A give-back counted twice left 7 after this take. Since issue #17
    // a give-back needs the TAT its decision left, which a decision answered from its marker does
    // not know: nothing is given back (strict), 5 left.
    expect((await direct.take('k')).remaining).toBe(5);
  }, 15_000);

  // Decisions carry no marker by default, give-backs still do: a resent give-back is loose (a
  // client gets more than the limit), where a resent decision is strict. Before, resendWindow 0
  // gave nothing back at all (the request the rest of the policy refused kept its unit).
  it.each([
    ['the default', undefined],
    ['resendWindow 0', 0],
  ])(
    '%s: a refused request whose give-back is resent gets back what it took once; no marker for the decision',
    async (name, resendWindow) => {
      const prefix = `giveback:only:${name.replace(/\s/g, '')}:`;
      const direct = redisRateLimiter({ client, limit: 10, interval: 60_000, policies: false, prefix });
      for (let i = 0; i < 3; i++) expect((await direct.take('k')).allowed).toBe(true); // 7 left
      // The give-back is an EVAL once the decision's script is loaded (the warm-up): only it is resent.
      let armed = false;
      const { twice, reached, executed } = resending((command) => armed && command === 'eval');
      const shared = redisRateLimiter({
        client: twice,
        limit: 10,
        interval: 60_000,
        resendWindow,
        policies: false,
        prefix,
      });
      await shared.take('warm-up');
      armed = true;
      const total = tokenBucket({ limit: 1, interval: 60_000, key: () => 'all', policies: false });
      total.take();
      const url = await serve(pipeline(shared, total));
      const response = await fetch(url);
      expect(response.status).toBe(429); // took 1 (6 left), the total refused: given back (7 left)
      // The give-back twice, its clock and its script (before, with resendWindow 0, none was sent).
      await Promise.race([reached(4), new Promise((resolve) => setTimeout(resolve, 3_000))]);
      expect(executed()).toBe(4);
      // 7 left before the request, so 6 after this take: given back twice, 7; never given back, 5.
      expect((await direct.take('k')).remaining).toBe(6);
      // The decision left no marker; the give-back one, kept 10 s.
      expect(await client.keys(`${prefix}*:r:*`)).toEqual([]);
      const markers = await client.keys(`${prefix}*:g:*`);
      expect(markers).toHaveLength(1);
      const ttl = await client.pttl(markers[0] as string);
      expect(ttl).toBeGreaterThan(5_000);
      expect(ttl).toBeLessThanOrEqual(10_000);
    },
    15_000,
  );

  it('the default: a refused request whose decision and give-back are both resent never gets more than the limit (the decision may take twice, the give-back gives once)', async () => {
    const prefix = 'giveback:both:';
    const direct = redisRateLimiter({ client, limit: 10, interval: 60_000, policies: false, prefix });
    for (let i = 0; i < 3; i++) expect((await direct.take('k')).allowed).toBe(true); // 7 left
    const { twice, reached } = resending();
    const shared = redisRateLimiter({ client: twice, limit: 10, interval: 60_000, policies: false, prefix });
    const total = tokenBucket({ limit: 1, interval: 60_000, key: () => 'all', policies: false });
    total.take();
    const url = await serve(pipeline(shared, total));
    expect((await fetch(url)).status).toBe(429);
    await reached(6); // the decision twice (took 2: 5 left), the give-back twice (gave 1: 6 left), with its clock
    expect((await direct.take('k')).remaining).toBe(5);
  }, 15_000);

  // Issue #17: limit 1 a second, burst 1. A allowed at 0 (its request then held, as a bulkhead's
  // queue holds it), B allowed at 1 s, A given back at 1.5 s. Before, the give-back moved the TAT
  // back a whole second (to 1 s, before now): the key went, and C was allowed at 1.5 s: B and C
  // within 0.5 s, 2 calls in a limit of 1 a second.
  it('late: gives back only what the clock had not yet absorbed: no second call within the interval of B', async () => {
    const rl = redisRateLimiter({ client, limit: 1, interval: 1_000, policies: false, prefix: 'late:' });
    const undos: (() => void)[] = [];
    const hook = { [Symbol.for('holdfast.limit.taken')]: (undo: () => void) => undos.push(undo) };
    await rl.execute(() => 'A', { key: 'k', ...hook } as never);
    let b = 0;
    while (!(await rl.take('k')).allowed) await new Promise((r) => setTimeout(r, 20));
    b = performance.now(); // B allowed (about 1 s after A)
    await new Promise((r) => setTimeout(r, 500));
    undos[0]?.(); // A's give-back, late
    await client.ping(); // (the give-back is not awaited: two round trips)
    await client.ping();
    const allowedWithin: number[] = [];
    while (performance.now() - b < 800) {
      if ((await rl.take('k')).allowed) allowedWithin.push(Math.round(performance.now() - b));
      await new Promise((r) => setTimeout(r, 20));
    }
    // Before: [5xx] (C allowed about 500 ms after B).
    expect(allowedWithin).toEqual([]);
  });

  it('late: a give-back before the clock absorbed the cell still gives it back whole', async () => {
    const rl = redisRateLimiter({ client, limit: 1, interval: 60_000, burst: 2, policies: false, prefix: 'early:' });
    const undos: (() => void)[] = [];
    const hook = { [Symbol.for('holdfast.limit.taken')]: (undo: () => void) => undos.push(undo) };
    await rl.execute(() => 'A', { key: 'k', ...hook } as never);
    expect((await rl.take('k')).allowed).toBe(true); // B: none left
    undos[0]?.();
    await client.ping();
    await client.ping();
    // A's TAT comes back in whole ms, rounded down: the give-back is short of a unit by under 1 ms.
    await new Promise((r) => setTimeout(r, 5));
    expect((await rl.take('k')).allowed).toBe(true); // A's unit, back (less the ms since A)
    expect((await rl.take('k')).allowed).toBe(false);
  });

  // The decision script packs the key's TAT after an allowed decision beside the units left
  // (left + (burst + 1) x floor(TAT / unit)). Here the limiter's own script runs on a real Redis, its
  // clock (TIME) replaced by a chosen instant, over the options zod accepts: the units left must be
  // what the script computed, and the TAT the give-back is sent never above the one Redis stored
  // (never loose), nor below it by a unit or more.
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
        // The give-back: what it was told of the decision (ARGV[4], before the hold of J's key).
        if (source?.includes('ARGV[4]')) {
          sent.push(Number(rest.at(-2)));
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
          // Rounded down with the script's slack for the floats' own error (review s38b: a fresh key
          // of 6 a second came out 4.99999 units and was told 4, tokenBucket() says 5).
          const slack = Math.min(0.01, ((2 ** 44 + emission * o.burst) * 2 ** -50) / emission);
          const left = Math.floor((now + emission * o.burst - stored) / emission + slack);
          expect(d.remaining).toBe(Math.min(left, o.burst - cost));
          // Again through execute, for a give-back (a second decision on the same instant).
          await client.set(key, String(tat), 'PX', 60_000);
          if (owed === 0) await client.del(key);
          const ran = await rl.execute(() => true, { key: 'k', cost, ...hook } as never).catch(() => false);
          fc.pre(ran);
          const stored2 = Number(await client.get(key));
          fc.pre(stored2 > 0);
          // The decision made the key's give-back clock J (its clock then, ms rounded up) and told TAT + J.
          const j = Number(await client.get(`${key}:j`));
          expect(j).toBe(Math.ceil(now));
          const sent = next();
          undo();
          const told = (await sent) - j;
          expect(told).toBeLessThanOrEqual(stored2);
          const unit = stored2 - told;
          worst.below = Math.max(worst.below, unit);
          await client.del(key, `${key}:j`);
          // Within a unit of `#unit` ms: 1 up to bursts in the hundreds, 2^k above (TAT + J: both
          // clocks up to 2^43 ms, J's lead up to 2^42).
          const most = (2 ** 44 + 2 ** 42 + emission * o.burst) * (o.burst + 1);
          const size = 2 ** Math.max(0, Math.ceil(Math.log2(most / 2 ** 53)));
          worst.unit = Math.max(worst.unit, size);
          expect(unit).toBeLessThan(size);
        },
      ),
      // Pinned: TAT + J summed as floats rounded up past a whole ms (at 2^42 ms the sum's step is
      // 2^-9 ms), and the reply told a TAT 0.001 ms after the stored one.
      { numRuns: 400, examples: [[{ limit: 1, interval: 1, burst: 1 }, 4_398_046_511, 999_999, 0, 0]] },
    );
    console.log('decode: worst TAT told below the stored one', worst.below, 'ms; largest unit', worst.unit, 'ms');
  }, 120_000);

  // The real scripts on a real Redis through random steps: two limiters (two connections, as two
  // processes) share a key; each takes, or gives back one of the calls it let through, early or
  // late (a bulkhead's queue timing the request out), between bounded sleeps. The calls that ran
  // (allowed, not given back), at the server's clock, must fit the exact GCRA schedule.
  // With `plain`, the second limiter's calls are plain execute() calls, never given back: they
  // neither read nor make the give-back clock J, on the key whose other decisions do.
  it.each([
    { plain: false, limiters: 'two middleware limiters' },
    { plain: true, limiters: 'a middleware limiter and a plain one' },
  ])(
    'never loose over 160 steps (limit 3 per 300 ms, burst 3, costs 1-2), $limiters; how strict, counted',
    async ({ plain }) => {
      let seed = 20_261_205;
      const random = () => {
        seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
        return seed / 2 ** 31;
      };
      const emission = 100;
      const burst = 3;
      const clients = [client, new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })];
      clients[1]?.on('error', () => {});
      const limiters = clients.map((client) =>
        redisRateLimiter({
          client,
          limit: 3,
          interval: 300,
          burst,
          commandTimeout: 5_000,
          policies: false,
          prefix: plain ? 'walk-plain:' : 'walk:',
        }),
      );
      const serverMs = async (c: Redis) => {
        const [s, us] = (await c.call('time')) as [string, string];
        return Number(s) * 1000 + Number(us) / 1000;
      };
      type Ran = { at: number; cost: number; back: boolean; undo: () => void; who: number };
      const ran: Ran[] = [];
      let refused = 0;
      let fit = 0;
      let backs = 0;
      for (let step = 0; step < 160; step++) {
        const who = random() < 0.5 ? 0 : 1;
        const client = clients[who] as Redis;
        const kept = ran.filter((r) => !r.back && r.who === who);
        if (random() < 0.3 && kept.length > 0 && !(plain && who === 1)) {
          // Mostly the oldest: late, after the key's clock absorbed its cell (issue #17's case).
          const r = kept[random() < 0.7 ? 0 : Math.floor(random() * kept.length)] as Ran;
          r.back = true;
          r.undo();
          backs++;
          await client.ping(); // the server's clock, then the give-back script, on this connection
          await client.ping();
        } else {
          const cost = random() < 0.25 ? 2 : 1;
          let undo = () => {};
          const hook = plain && who === 1 ? {} : { [TAKEN]: (u: () => void) => (undo = u) };
          const before = await serverMs(client);
          const allowed = await (limiters[who] as (typeof limiters)[0])
            .execute(() => true, { key: 'k', cost, ...hook } as never)
            .catch(() => false);
          const after = await serverMs(client);
          // Counted at the latest the script could have run: lenient by the round trip (ms), where
          // a loose give-back lets a call through a whole emission interval (100 ms) early.
          if (allowed) ran.push({ at: after, cost, back: false, undo, who });
          // How strict: a refusal the exact schedule of the calls running then would have let through.
          else if (conforms([...ran.filter((r) => !r.back), { at: before, cost }], emission, emission * burst)) fit++;
          else refused++;
        }
        await new Promise((r) => setTimeout(r, Math.floor(random() * 60)));
      }
      const kept = ran.filter((r) => !r.back);
      console.log(
        `walk: ${ran.length} allowed, ${backs} given back, ${refused + fit} refused, of which ${fit} would have fit`,
      );
      expect(ran.length).toBeGreaterThan(30);
      expect(backs).toBeGreaterThan(plain ? 5 : 10);
      expect(conforms(kept, emission, emission * burst)).toBe(true);
      clients[1]?.disconnect();
    },
    60_000,
  );

  // The give-back clock J runs ahead of the server's clock when give-backs outpace time. Kept, a
  // give-back of a decision whose cell earlier give-backs moved back gives only what is left of it.
  // J's key lost alone (evicted under maxmemory, deleted) while the TAT's lives: J read as now,
  // below what it was, gave that shift again (the TAT 864 ms before the exact schedule's); a
  // give-back that finds J's key gone now gives nothing. Not yet handled: J's key lost and made
  // again (at now) by a decision before the give-back, pinned here so that a fix turns it red and
  // the README gets updated.
  it.each([
    { lost: 'no', what: 'J kept: the TAT never before the exact schedule of the calls that ran' },
    { lost: 'alone', what: "J's key lost: nothing given, the TAT never before it" },
    {
      lost: 'remade',
      what: "J's key lost and made again by a decision (not yet handled): the TAT over 500 ms before it",
    },
  ])(
    'limit 1 a second, burst 4: four taken, three given back at once, a call at 0.9 s, the fourth given back: $what',
    async ({ lost }) => {
      const time = async () => {
        const [s, us] = (await client.call('time')) as [string, string];
        return Number(s) * 1000 + Number(us) / 1000;
      };
      const prefix = `j-lost-${lost}:`;
      const l = redisRateLimiter({ client, limit: 1, interval: 1_000, burst: 4, policies: false, prefix });
      const undos: (() => void)[] = [];
      const hook = { [TAKEN]: (u: () => void) => undos.push(u) };
      for (let i = 0; i < 4; i++) expect(await l.execute(() => true, { key: 'k', ...hook } as never)).toBe(true);
      const t0 = await time();
      for (const undo of undos.slice(0, 3)) {
        undo();
        await client.ping(); // the server's clock, then the give-back script
        await client.ping();
      }
      const [j] = await client.keys(`${prefix}*:j`);
      expect(Number(await client.get(j as string)) - (await time()), "J's lead").toBeGreaterThan(2_500);
      const wait = 900 - ((await time()) - t0);
      await new Promise((r) => setTimeout(r, Math.max(0, wait)));
      const at = await time();
      expect((await l.take('k')).allowed).toBe(true); // the one call that runs
      if (lost !== 'no') await client.del(j as string);
      // A middleware decision that runs: it reads J, and makes its key again when missing.
      if (lost === 'remade') expect(await l.execute(() => true, { key: 'k', [TAKEN]: () => {} } as never)).toBe(true);
      undos[3]?.();
      await client.ping();
      await client.ping();
      const [tat] = (await client.keys(`${prefix}*`)).filter((k) => !k.includes('}:'));
      // The exact schedule of the calls that ran: their cells end an emission interval each after the first.
      const early = at + (lost === 'remade' ? 2_000 : 1_000) - Number(await client.get(tat as string));
      console.log(`J ${lost}: the TAT ${early.toFixed(1)} ms before the exact schedule's`);
      if (lost === 'remade') expect(early).toBeGreaterThan(500);
      else expect(early).toBeLessThan(1);
    },
  );
});

// A key forgotten past maxKeys and made again by a later request holds that request's units: a
// give-back of an earlier request landing there handed the client more than the limit.
it.each([
  ['tokenBucket', () => tokenBucket({ limit: 2, interval: 60_000, maxKeys: 1, policies: false })],
  ['slidingWindow', () => slidingWindow({ limit: 2, interval: 60_000, maxKeys: 1, policies: false })],
])('%s: a give-back to a key forgotten and made again since gives nothing', async (_name, make) => {
  const limiter = make();
  const undos: (() => void)[] = [];
  // How the middleware hears of the undo (src/http.ts); here the request is then refused.
  const hook = { [Symbol.for('holdfast.limit.taken')]: (undo: () => void) => undos.push(undo) };
  await limiter.execute(() => 'x', { key: 'k', ...hook } as never);
  expect(undos.length).toBe(1);
  limiter.take('other'); // forgets k (maxKeys 1): a full limit again
  expect(limiter.take('k').allowed).toBe(true); // made again: 1 left
  undos[0]?.();
  // Since k was made again, 2 allowed at most: 1 taken, 1 left.
  expect([limiter.take('k').allowed, limiter.take('k').allowed]).toEqual([true, false]);
});

/**
 * A `bus` option given a bus of the user's own (an adapter to their event system) whose `emit`
 * throws must never break a call, nor stop an anomaly watch's actions: every package shields it
 * as core's policies do (`shieldBus`), and tells the throw once per bus (`HOLDFAST_BUS_ERROR`).
 */
import { anomalyWatch } from '@holdfast/anomaly';
import { drill, faultProxy, faultyFetch, injectOutcome } from '@holdfast/chaos';
import { type Bus, createBus, ManualClock } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { resilientFetch } from '@holdfast/fetch';
import { idempotent, memoryStore } from '@holdfast/idempotency';
import { idempotency } from '@holdfast/idempotency/fastify';
import { bulkhead, tokenBucket } from '@holdfast/limit';
import Fastify from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/** The user's adapter: it hands each event on to their listeners, then its own sink throws. */
function throwingBus(): Bus {
  const inner = createBus();
  return {
    on: inner.on.bind(inner) as Bus['on'],
    once: inner.once.bind(inner) as Bus['once'],
    wants: () => true,
    emit: (event) => {
      inner.emit(event);
      throw new Error('my event sink is down');
    },
  };
}

let codes: string[] = [];
const onWarning = (w: Error & { code?: string }) => codes.push(w.code ?? w.name);
beforeEach(() => {
  codes = [];
  process.on('warning', onWarning);
});
afterEach(() => {
  process.off('warning', onWarning);
});
const tick = () => new Promise((resolve) => setImmediate(resolve));
const outcome = (p: Promise<unknown>) =>
  p.then(
    (v) => v,
    (e: unknown) => `rejected: ${(e as { code?: string }).code ?? (e as Error).message}`,
  );
const refused = () =>
  new TypeError('fetch failed', { cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }) });

/** Each case drives calls with the throwing bus and returns what they came to. */
const cases: [string, (bus: Bus) => Promise<unknown>, unknown][] = [
  [
    'failover: a refused endpoint, then the next one answers',
    async (bus) => {
      const set = failover({
        endpoints: ['a', 'b'],
        mode: 'active-passive',
        ejection: false,
        bus,
        policies: false,
        clock: new ManualClock(),
      });
      const result = await outcome(set.execute((e) => (e.name === 'a' ? Promise.reject(refused()) : e.name)));
      set.dispose();
      return result;
    },
    'b',
  ],
  [
    'limit: a full bulkhead and an empty token bucket refuse with their own errors',
    async (bus) => {
      const clock = new ManualClock();
      const b = bulkhead({ maxConcurrent: 1, bus, clock, policies: false });
      let release = () => {};
      const held = b.execute(() => new Promise<string>((resolve) => (release = () => resolve('held'))));
      const full = await outcome(b.execute(() => 'not run'));
      release();
      const t = tokenBucket({ limit: 1, bus, clock, policies: false });
      const rated = [await outcome(t.execute(() => 'first')), await outcome(t.execute(() => 'not run'))];
      return [await held, full, ...rated];
    },
    ['held', 'rejected: E_BULKHEAD_FULL', 'first', 'rejected: E_RATE_LIMITED'],
  ],
  [
    'idempotency: idempotent() runs once and replays (a throw after the claim left it held)',
    async (bus) => {
      let runs = 0;
      const charge = idempotent((amount: number) => ({ charged: amount, run: ++runs }), {
        store: memoryStore(),
        key: (amount) => `charge-${amount}`,
        bus,
      });
      return [await outcome(charge(5)), await outcome(charge(5)), runs];
    },
    [{ charged: 5, run: 1 }, { charged: 5, run: 1 }, 1],
  ],
  [
    'idempotency: the HTTP middleware answers and replays, never a 500',
    async (bus) => {
      const app = Fastify();
      await app.register(idempotency, { scope: 'global', store: memoryStore(), bus });
      let runs = 0;
      app.post('/orders', async () => ({ order: ++runs }));
      const post = () =>
        app.inject({ method: 'POST', url: '/orders', payload: {}, headers: { 'idempotency-key': 'k-1' } });
      const [first, again] = [await post(), await post()];
      await app.close();
      return [first.statusCode, first.body, again.statusCode, again.headers['idempotent-replayed'], runs];
    },
    [200, '{"order":1}', 200, 'true', 1],
  ],
  [
    'fetch: the first base URL tried refuses, the other one answers',
    async (bus) => {
      let sent = 0;
      const retries: string[] = [];
      bus.on('retry.attempt', (e) => void retries.push(e.source));
      const api = resilientFetch({
        baseUrls: ['http://a.test', 'http://b.test'],
        fetch: async () => (sent++ === 0 ? Promise.reject(refused()) : new Response('answered')),
        bus,
      });
      const result = await outcome(api('/x').then((r) => r.text()));
      api.dispose();
      // The set's move to the other base URL, and no more: not a backoff and a second run of the
      // set by the retry around it, for the bus's throw taken for the call's failure.
      return [result, sent, retries];
    },
    ['answered', 2, ['fetch']],
  ],
  [
    'chaos: an injection, a faulty fetch, a proxy toxic and a drill go on',
    async (bus) => {
      const injected = await outcome(
        injectOutcome({ outcome: () => 'injected', enabled: true, bus }).execute(() => 'x'),
      );
      const faulty = faultyFetch({
        enabled: true,
        fetch: async () => new Response('ok'),
        faults: [{ type: 'status', status: 503 }],
        bus,
      });
      const status = await outcome(faulty('http://a.test/').then((r) => r.status));
      const proxy = await faultProxy({ target: { port: 9 }, bus });
      const toxic = await outcome(Promise.resolve().then(() => proxy.add({ type: 'latency', latency: 1 }).name));
      await proxy.close();
      const result = await outcome(
        drill({
          print: false,
          bus,
          load: { duration: 1_000, drive: async (send) => void (await send(() => Promise.resolve('ok'))) },
        }).then((r) => `passed ${r.passed}, ${r.load.succeeded} succeeded`),
      );
      return [injected, status, toxic, result];
    },
    ['injected', 503, 'latency-1', 'passed true, 1 succeeded'],
  ],
  [
    'anomaly: the watch still opens the sick key’s breaker',
    async (bus) => {
      const clock = new ManualClock(0);
      const opened: string[] = [];
      const watch = anomalyWatch({
        bus,
        clock,
        interval: 1_000,
        raiseAfter: 1,
        actions: { openBreaker: { breakerOf: (key) => ({ name: key, open: () => void opened.push(key) }) } },
      });
      for (let s = 0; s < 50; s++) {
        for (const n of ['a', 'b', 'c']) {
          const latency = s >= 35 && n === 'a' ? 300 : 20 + (s % 3);
          for (let i = 0; i < 10; i++) watch.observe(`api/${n}`, latency, 'success');
        }
        await clock.advance(1_000);
      }
      watch.dispose();
      return opened;
    },
    ['api/a'],
  ],
];

describe('a bus of the user’s own whose emit throws breaks no call (secrets-bus)', () => {
  for (const [what, run, expected] of cases) {
    it(what, async () => {
      const result = await run(throwingBus());
      await tick();
      expect(result).toEqual(expected);
      expect(codes.filter((c) => c === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
    });
  }
});

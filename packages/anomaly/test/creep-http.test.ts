import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { circuitBreaker } from '@holdfast/breaker';
import { createBus, type EventOf } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

/** An HTTP upstream on a free loopback port that answers after `delay()` ms. */
async function upstream(name: string, delay: () => number) {
  let hits = 0;
  const server: Server = createServer((_req, res) => {
    hits++;
    setTimeout(() => res.end(name), delay());
  }).listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { name, url, server, hits: () => hits };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((done) => s.close(done))));
});

describe('anomalyWatch early ejection, against real HTTP upstreams whose latency creeps', () => {
  it('ejects the creeping one early, again after each ejection runs out while it is still slow, and lets it back once it recovers', async () => {
    const INTERVAL = 400;
    const WATCH_AT = 1_000; // ms from the start: connections and code are warm, the watch starts
    const CREEP_AT = 4_600; // warm-up done (8 intervals); b's latency climbs from 10 to 1,000 ms over 2 s
    const RECOVER_AT = 10_000; // b answers in 10 ms again
    const END = 14_000;
    let started = 0;
    const since = () => Date.now() - started;
    const bDelay = () => {
      const t = since();
      if (t < CREEP_AT || t >= RECOVER_AT) return 10;
      return 10 + 990 * Math.min(1, (t - CREEP_AT) / 2_000);
    };
    const ups = await Promise.all([upstream('a', () => 10), upstream('b', bDelay), upstream('c', () => 10)]);
    servers.push(...ups.map((u) => u.server));

    const bus = createBus();
    const api = failover({
      name: 'api',
      bus,
      endpoints: ups.map((u) => ({ name: u.name, target: u.url })),
      retry: false,
      policies: false,
    });
    const breakers = new Map(ups.map((u) => [u.name, circuitBreaker({ name: `api/${u.name}`, bus, policies: false })]));
    const watching = () =>
      anomalyWatch({
        bus,
        interval: INTERVAL,
        minCalls: 2,
        detector: 'baseline',
        baseline: { warmup: 8 },
        actions: { eject: { failover: api, duration: 1_500 } },
      });

    const actions: EventOf<'anomaly.action'>[] = [];
    const ejects: EventOf<'failover.eject'>[] = [];
    const cleared: number[] = [];
    /** At each ejection: how many endpoints were left to take calls. */
    const availableAtEject: number[] = [];
    bus.on('anomaly.action', (e) => actions.push(e));
    bus.on('anomaly.cleared', (e) => {
      if (e.key === 'api/b') cleared.push(e.time - started);
    });
    bus.on('failover.eject', (e) => {
      ejects.push(e);
      availableAtEject.push(api.snapshot().endpoints.filter((x) => x.available).length);
    });

    // Eight clients calling back to back, through the set, each endpoint behind its own breaker.
    started = Date.now();
    let watch: ReturnType<typeof anomalyWatch> | undefined;
    const start = setTimeout(() => {
      watch = watching();
    }, WATCH_AT);
    const served: { at: number; by: string }[] = [];
    let failed = 0;
    const client = async () => {
      while (since() < END) {
        await api
          .execute((e, { signal }) =>
            (breakers.get(e.name) as ReturnType<typeof circuitBreaker>).execute(() =>
              fetch(`${e.target}/`, { signal }).then((r) => r.text()),
            ),
          )
          .then(
            (by) => served.push({ at: since(), by }),
            () => failed++,
          );
      }
    };
    await Promise.all(Array.from({ length: 8 }, client));
    const end = api.snapshot();
    clearTimeout(start);
    watch?.dispose();
    api.dispose();
    for (const b of breakers.values()) b.dispose();

    const mine = actions.filter((a) => a.target === 'b');
    const taken = mine.filter((a) => a.action === 'eject' && a.taken);
    const summary = mine.map((a) => `${a.action}:${a.reason}${a.taken ? '' : '(refused)'}@${a.time - started}`);
    console.log(`served ${served.length}, failed ${failed}; b: ${summary.join(' ')}; b cleared at ${cleared}`);

    expect(failed).toBe(0);
    // Ejected early: during the creep, before it reached its worst.
    expect(taken[0]?.reason).toBe('anomaly');
    expect((taken[0]?.time ?? 0) - started).toBeGreaterThan(CREEP_AT);
    expect((taken[0]?.time ?? 0) - started).toBeLessThan(RECOVER_AT);
    // Each ejection ran out while b was still slow; it came back, was scored slow, and was ejected again.
    const again = taken.filter((a) => a.reason === 'stillRaised');
    expect(again.length).toBeGreaterThanOrEqual(1);
    expect(again.every((a) => a.time - started < RECOVER_AT + 1_500)).toBe(true);
    // Through the set's eject(): it counts ejections in a row and says why.
    const bEjects = ejects.filter((e) => e.endpoint === 'b');
    expect(bEjects.length).toBe(taken.length);
    expect(bEjects.every((e) => e.reason === 'anomaly')).toBe(true);
    expect(bEjects.map((e) => e.ejections)).toEqual(bEjects.map((_, i) => i + 1));
    // Recovered: back in the rotation, its anomaly cleared, taking calls to the end.
    expect(cleared.some((t) => t > RECOVER_AT)).toBe(true);
    expect(end.endpoints.find((e) => e.name === 'b')).toMatchObject({ ejection: 'none', available: true });
    const late = served.filter((s) => s.at > END - 1_500);
    expect(late.filter((s) => s.by === 'b').length).toBeGreaterThan(late.length / 6);
    // Never the last endpoint: every ejection left at least one other to take calls, never two out.
    expect(availableAtEject.every((n) => n >= 1)).toBe(true);
    expect(Math.max(...availableAtEject)).toBeLessThanOrEqual(2);
  }, 30_000);
});

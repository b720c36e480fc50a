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
  it('ejects the creeping one early, keeps it out while it stays slow (each probe judged as it answers), and lets it back once it recovers', async () => {
    const INTERVAL = 400;
    const WATCH_AT = 1_500; // ms from the start: connections and code are warm, the watch starts
    // The phases move on events, not on the wall clock: a loaded machine only makes the run longer.
    let phase: 'warm' | 'slow' | 'recovered' = 'warm';
    let creepFrom = 0;
    // Slow: b's latency climbs from 10 to 1,500 ms over 1.5 s, and stays there until it recovers.
    const bDelay = () => (phase === 'slow' ? 10 + 1_490 * Math.min(1, (Date.now() - creepFrom) / 1_500) : 10);
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
        actions: { eject: { failover: api, duration: 1_000 } },
      });

    /** Everything about b, each with the phase it happened in. */
    const actions: (EventOf<'anomaly.action'> & { phase: string })[] = [];
    const detected: (EventOf<'anomaly.detected'> & { phase: string })[] = [];
    const cleared: (EventOf<'anomaly.cleared'> & { phase: string })[] = [];
    const ejects: (EventOf<'failover.eject'> & { phase: string })[] = [];
    const restores: (EventOf<'failover.restore'> & { phase: string })[] = [];
    /** At each ejection of any endpoint: how many endpoints were left to take calls. */
    const availableAtEject: number[] = [];
    bus.on('anomaly.action', (e) => e.target === 'b' && actions.push({ ...e, phase }));
    bus.on('anomaly.detected', (e) => e.key === 'api/b' && detected.push({ ...e, phase }));
    bus.on('anomaly.cleared', (e) => e.key === 'api/b' && cleared.push({ ...e, phase }));
    bus.on('failover.restore', (e) => e.endpoint === 'b' && restores.push({ ...e, phase }));
    bus.on('failover.eject', (e) => {
      if (e.endpoint === 'b') ejects.push({ ...e, phase });
      availableAtEject.push(api.snapshot().endpoints.filter((x) => x.available).length);
    });
    const taken = () => actions.filter((a) => a.action === 'eject' && a.taken);

    // 40 calls a second whatever their latency (an open loop: a slow endpoint gets its share of
    // calls, and of samples), through the set, each endpoint behind its own breaker.
    const started = Date.now();
    const deadline = started + 45_000;
    let sent = 0;
    let failed = 0;
    const served: { phase: string; by: string }[] = [];
    const calls: Promise<unknown>[] = [];
    /** Sends the open loop's calls until `done()` says so, or the deadline passes; returns `done()`. */
    const runUntil = async (done: () => boolean) => {
      while (!done() && Date.now() < deadline) {
        for (; sent < (Date.now() - started) / 25; sent++) {
          const call = api.execute((e, { signal }) =>
            (breakers.get(e.name) as ReturnType<typeof circuitBreaker>).execute(() =>
              fetch(`${e.target}/`, { signal }).then((r) => r.text()),
            ),
          );
          const at = phase;
          calls.push(
            call.then(
              (by) => served.push({ phase: at, by }),
              () => failed++,
            ),
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return done();
    };

    await runUntil(() => Date.now() - started >= WATCH_AT);
    const watch = watching();
    // Warm-up done (8 intervals) and a few more scored, b quiet and in the rotation (on a loaded
    // machine a healthy endpoint's p99 may jump for an interval and get it ejected): then b creeps.
    const quiet = () => {
      const watched = watch.snapshot().keys.find((k) => k.key === 'api/b');
      const inSet = api.snapshot().endpoints.find((e) => e.name === 'b');
      return (watched?.samples ?? 0) >= 10 && watched?.raised === false && inSet?.available === true;
    };
    const warm = await runUntil(quiet);
    phase = 'slow';
    creepFrom = Date.now();
    // Slow until b was let back through a probe twice and put out again each time.
    const stillRaised = () => taken().filter((a) => a.phase === 'slow' && a.reason === 'stillRaised');
    const slow = await runUntil(() => stillRaised().length >= 2);
    phase = 'recovered';
    // Recovered: back through its probe, its anomaly cleared, then 30 calls served by it.
    const servedByB = () => served.filter((s) => s.phase === 'recovered' && s.by === 'b').length;
    let servedBefore = Number.POSITIVE_INFINITY;
    const recovered = await runUntil(() => {
      if (restores.every((r) => r.phase !== 'recovered') || cleared.every((c) => c.phase !== 'recovered')) return false;
      servedBefore = Math.min(servedBefore, servedByB());
      return servedByB() - servedBefore >= 30;
    });
    await Promise.all(calls);
    watch.dispose();
    api.dispose();
    for (const b of breakers.values()) b.dispose();

    const at = (t: number) => `${((t - started) / 1000).toFixed(1)}s`;
    const summary = actions.map((a) => `${a.action}:${a.reason}${a.taken ? '' : '(refused)'}@${at(a.time)}`);
    console.log(
      `sent ${sent}, served ${served.length}, failed ${failed}; slow from ${at(creepFrom)}; b: ${summary.join(' ')}; ` +
        `set restored b at ${restores.map((r) => at(r.time))}; cleared at ${cleared.map((c) => at(c.time))}`,
    );

    expect({ warm, slow, recovered }).toEqual({ warm: true, slow: true, recovered: true });
    expect(failed).toBe(0);
    // Ejected early: detected while its latency was still on its way up, then taken out for it.
    const first = detected.find((d) => d.phase === 'slow' && d.metric.startsWith('latency'));
    expect(first?.value).toBeLessThan(1_500);
    expect(taken().find((a) => a.phase === 'slow')?.reason).toBe('anomaly');
    // While slow, each ejection ran out and b's probe answered slow: it went out again as the probe
    // answered, so the set never let it back into the rotation.
    expect(restores.filter((r) => r.phase === 'slow')).toEqual([]);
    // Through the set's eject(): it says why, and counts the ejections in a row.
    expect(ejects.length).toBe(taken().length);
    expect(ejects.every((e) => e.reason === 'anomaly')).toBe(true);
    const inARow = ejects.filter((e) => e.phase === 'slow').map((e) => e.ejections);
    expect(inARow.slice(1)).toEqual(inARow.slice(0, -1).map((n) => n + 1));
    // Recovered: its probe passed, its anomaly cleared as recovered, and it takes calls again.
    expect(cleared.some((c) => c.phase === 'recovered' && c.reason === 'recovered')).toBe(true);
    expect(servedByB() - servedBefore).toBeGreaterThanOrEqual(30);
    // Never the last endpoint: every ejection left at least one other to take calls, never two out.
    expect(availableAtEject.every((n) => n >= 1)).toBe(true);
    expect(Math.max(...availableAtEject)).toBeLessThanOrEqual(2);
  }, 60_000);
});

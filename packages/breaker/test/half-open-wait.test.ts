import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BrokenCircuitError, createBus } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { circuitBreaker } from '../src/index.js';
import { after, setup } from './support.js';

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => undefined,
    (e: unknown) => e as BrokenCircuitError,
  );

describe('half-open with its probes out: retryAt is a time in the future, never "now"', () => {
  it('says to come back when the probe is expected back: the p99 latency of the calls that opened it', async () => {
    const { breaker, clock } = setup({ minimumCalls: 3, failureRateThreshold: 1, openFor: 10_000 });
    // Three calls that time out after 800 ms open the breaker: a probe may take as long.
    for (let i = 0; i < 3; i++) {
      const timedOut = Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' });
      const call = breaker.execute(after(clock, 800, timedOut, true)).catch(() => undefined);
      await clock.advance(800);
      await call;
    }
    expect(breaker.state).toBe('open');
    await clock.advance(10_000);
    const probeAt = clock.now();
    const probe = breaker.execute(after(clock, 700, 'ok'));
    const first = await refusal(breaker.execute(() => 'not run'));
    expect(first).toBeInstanceOf(BrokenCircuitError);
    // The histogram is within ~20%: 800 ms reads as 640..960.
    expect(first?.retryAt).toBeGreaterThanOrEqual(probeAt + 640);
    expect(first?.retryAt).toBeLessThanOrEqual(probeAt + 960);
    // A caller refused later in the probe is told the same time, not a time that slides with it.
    await clock.advance(300);
    expect((await refusal(breaker.execute(() => 'not run')))?.retryAt).toBe(first?.retryAt);
    await clock.advance(400);
    await expect(probe).resolves.toBe('ok');
    expect(breaker.state).toBe('closed');
  });

  it('without latencies to go by (opened by hand), waits 100 ms; later again while the probe is overdue', async () => {
    const { breaker, clock, of } = setup({ openFor: 1_000 });
    breaker.open();
    await clock.advance(1_000);
    const probe = breaker.execute(after(clock, 250, 'ok'));
    const retryAts: number[] = [];
    for (let t = 0; t < 250; t += 10) {
      const e = await refusal(breaker.execute(() => 'not run'));
      expect(e?.retryAt).toBeGreaterThan(clock.now());
      retryAts.push(e?.retryAt as number);
      await clock.advance(10);
    }
    // The probe stayed out 250 ms: the refusals named three times, 100 ms apart, each in the future.
    expect([...new Set(retryAts)]).toEqual([1_100, 1_200, 1_300]);
    expect(of('breaker.reject').every((e) => e.state === 'halfOpen' && (e.retryAt ?? 0) > e.time)).toBe(true);
    await expect(probe).resolves.toBe('ok');
  });

  it('never asks for longer than openFor: an open period shorter than the pause caps it', async () => {
    const { breaker, clock } = setup({ openFor: 40 });
    breaker.open();
    await clock.advance(40);
    const probe = breaker.execute(after(clock, 1_000, 'ok'));
    expect((await refusal(breaker.execute(() => 'not run')))?.retryAt).toBe(80);
    await clock.advance(1_000);
    await probe;
  });

  it('a restored half-open breaker asks for the pause too', async () => {
    const { breaker, clock } = setup({ openFor: 5_000 });
    const saved = { ...breaker.snapshot(), state: 'halfOpen' as const, opens: 1, retryAt: null, retryIn: null };
    const { breaker: restarted } = setup({ openFor: 5_000, restore: saved });
    const probe = restarted.execute(after(clock, 500, 'ok'));
    expect((await refusal(restarted.execute(() => 'not run')))?.retryAt).toBe(clock.now() + 100);
    await clock.advance(500);
    await probe;
  });
});

describe('a client that trusts retryAt, against a real HTTP upstream', () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((done) => (server ? server.close(() => done()) : done())));

  it('waits instead of spinning while the probe is out, and gets through once the probe succeeds', async () => {
    // Fails fast at first (503s open the breaker), then recovers, but its first answer takes 600 ms.
    let mode: 'failing' | 'recovering' = 'failing';
    let served = 0;
    server = createServer((_req, res) => {
      served++;
      if (mode === 'failing') return void res.writeHead(503).end();
      setTimeout(() => res.end('ok'), 600);
    }).listen(0, '127.0.0.1');
    await new Promise((resolve) => server?.once('listening', resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const bus = createBus();
    const breaker = circuitBreaker({ name: 'upstream', bus, minimumCalls: 3, openFor: 300, policies: false });
    const get = () => breaker.execute(({ signal }) => fetch(url, { signal }));

    for (let i = 0; i < 3; i++) await get();
    expect(breaker.state).toBe('open');
    mode = 'recovering';
    await new Promise((resolve) => setTimeout(resolve, 300));

    // Five clients, each calling, and when refused waiting exactly until retryAt to call again.
    const clients = Array.from({ length: 5 }, async () => {
      let attempts = 0;
      let refused = 0;
      const deadline = Date.now() + 5_000; // bounded: a client that never gets through stops here
      while (Date.now() < deadline) {
        attempts++;
        const sent = Date.now();
        const outcome = await get().then(
          (r) => r,
          (e: unknown) => e,
        );
        if (outcome instanceof Response && outcome.ok) return { attempts, refused, through: true };
        if (!(outcome instanceof BrokenCircuitError)) throw outcome;
        refused++;
        expect(outcome.retryAt).toBeGreaterThan(sent);
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, (outcome.retryAt ?? 0) - Date.now())));
      }
      return { attempts, refused, through: false };
    });
    const results = await Promise.all(clients);

    expect(results.every((r) => r.through)).toBe(true);
    expect(breaker.state).toBe('closed');
    // The probe took 600 ms and the opening calls took a few: a refused client comes back every
    // 100 ms at most, so ~7 attempts each. With retryAt = now it would be hundreds or thousands.
    for (const r of results) expect(r.refused).toBeLessThanOrEqual(10);
    const refusedInAll = results.reduce((n, r) => n + r.refused, 0);
    expect(refusedInAll).toBeGreaterThan(0); // the probe was out, and the others did wait
    // The upstream saw the 3 failures, the probe and one call from each of the other clients.
    expect(served).toBe(3 + 5);
  });
});

/**
 * An outside review of `@holdfast/limit`, `fallback()` / `hedge()` and `@holdfast/chaos`: each
 * `it` is one promise of the READMEs / docs that the first version broke (each failed then; each holds now).
 */

import { once } from 'node:events';
import { createServer } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { drill, faultProxy } from '@holdfast/chaos';
import { fallback, HoldfastConfigError, HoldfastError, hedge, ManualClock } from '@holdfast/core';
import { adaptiveConcurrency, adaptiveThrottle, bulkhead, slidingWindow, tokenBucket } from '@holdfast/limit';
import { loadShedding as expressShedding } from '@holdfast/limit/express';
import { loadShedding as fastifyShedding } from '@holdfast/limit/fastify';
import express from 'express';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';

/** A function that ignores its signal and answers `value` after `ms` of real time. */
const deaf =
  <T>(value: T, ms: number) =>
  () =>
    new Promise<T>((resolve) => setTimeout(() => resolve(value), ms));

describe('review: rate limiters', () => {
  it('tokenBucket maxKeys forgets the least recently refilled key, not the hot key a client is still hammering', async () => {
    // README/options: "Most distinct keys tracked; the least recently refilled are forgotten first."
    const clock = new ManualClock(0);
    const limiter = tokenBucket({ limit: 1, interval: 60_000, maxKeys: 3, clock, policies: false });
    expect(limiter.take('abuser').allowed).toBe(true); // t=0: the abuser spends its one token
    await clock.advance(1);
    expect(limiter.take('a').allowed).toBe(true);
    expect(limiter.take('b').allowed).toBe(true);
    // The abuser keeps calling: each call refills (touches) its bucket, so it is the MOST recent.
    expect(limiter.take('abuser').allowed).toBe(false);
    // One new key arrives: the least recently refilled is 'a', not 'abuser'.
    expect(limiter.take('c').allowed).toBe(true);
    // Observed: 'abuser' was evicted (insertion order) and gets a fresh full bucket.
    expect(limiter.take('abuser').allowed).toBe(false);
  });

  it('slidingWindow maxKeys: a client cycling maxKeys throwaway keys resets its own exhausted limit', () => {
    const clock = new ManualClock(0);
    const limiter = slidingWindow({ limit: 5, interval: 60_000, maxKeys: 100, clock, policies: false });
    let allowed = 0;
    // 10 rounds: 5 calls on the real key, then 100 calls on fresh throwaway keys.
    for (let round = 0; round < 10; round++) {
      for (let i = 0; i < 5; i++) if (limiter.take('victim-or-abuser').allowed) allowed++;
      for (let i = 0; i < 100; i++) limiter.take(`junk-${round}-${i}`);
    }
    // The key was used every round, so it is never the least recently used: 5 in the window.
    expect(allowed).toBe(5);
  });
});

describe('review: abort rules (docs/concepts.md "Aborts: the rules")', () => {
  // "during an attempt | rejects with `signal.reason`, whatever the attempt returns or throws after"
  it('hedge: a caller abort during an attempt rejects with the reason even if the attempt resolves after', async () => {
    const h = hedge({ delay: 10_000, safe: true, policies: false });
    const ac = new AbortController();
    const reason = new Error('caller gave up');
    const call = h.execute(deaf('late value', 30), { signal: ac.signal });
    setTimeout(() => ac.abort(reason), 5);
    await expect(call).rejects.toBe(reason);
  });

  it('hedge: an unsafe (unhedged) call aborted by its caller rejects with the reason, not the late value', async () => {
    const h = hedge({ delay: 10_000, policies: false });
    const ac = new AbortController();
    const reason = new Error('caller gave up');
    const call = h.execute(deaf('late value', 30), { signal: ac.signal });
    setTimeout(() => ac.abort(reason), 5);
    await expect(call).rejects.toBe(reason);
  });

  it('fallback: a caller abort during the call rejects with the reason even if the function resolves after', async () => {
    const f = fallback({ value: 'fallback value' });
    const ac = new AbortController();
    const reason = new Error('caller gave up');
    const call = f.execute(deaf('late value', 30), { signal: ac.signal });
    setTimeout(() => ac.abort(reason), 5);
    await expect(call).rejects.toBe(reason);
  });

  it('bulkhead: a caller abort while running rejects with the reason even if the function resolves after', async () => {
    const b = bulkhead({ maxConcurrent: 1, policies: false });
    const ac = new AbortController();
    const reason = new Error('caller gave up');
    const call = b.execute(deaf('late value', 30), { signal: ac.signal });
    setTimeout(() => ac.abort(reason), 5);
    await expect(call).rejects.toBe(reason);
  });
});

describe('review: options (BRIEF: bad options throw HoldfastConfigError naming the option and value)', () => {
  it('bulkhead queueTimeout past the timer range (3e9 ms, ~35 days) is refused or honoured, not turned into 1 ms', async () => {
    let b: ReturnType<typeof bulkhead>;
    try {
      b = bulkhead({ maxConcurrent: 1, maxQueue: 1, queueTimeout: 3e9, policies: false });
    } catch (error) {
      // Refusing it is fine, as core's durationOption does for every other timer.
      expect(error).toBeInstanceOf(HoldfastConfigError);
      expect(String(error)).toMatch(/queueTimeout/);
      return;
    }
    let release!: () => void;
    const first = b.execute(() => new Promise<void>((r) => (release = r)));
    const queued = b.execute(async () => 'second ran');
    const outcome = await Promise.race([
      queued.then(
        (v) => v,
        (e: Error) => `refused: ${e.name}`,
      ),
      new Promise((r) => setTimeout(() => r('still queued'), 100)),
    ]);
    release();
    await first;
    await queued.catch(() => undefined);
    // Observed: 'refused: BulkheadRejectedError' after ~1 ms (setTimeout overflow, TimeoutOverflowWarning).
    expect(outcome).toBe('still queued');
  });

  it('hedge percentile delay with min > max is refused (else "never hedge sooner than min" is broken)', () => {
    expect(() => hedge({ delay: { percentile: 0.9, min: 500, max: 10 }, policies: false })).toThrow(
      HoldfastConfigError,
    );
  });

  it('adaptiveConcurrency window.minTime > window.maxTime is refused', () => {
    expect(() =>
      adaptiveConcurrency({ algorithm: 'aimd', window: { minTime: 5_000, maxTime: 10 }, policies: false }),
    ).toThrow(HoldfastConfigError);
  });

  it('adaptiveConcurrency minLimit > maxLimit names minLimit/maxLimit and their values, not "initialLimit (got undefined)"', () => {
    let message = '';
    try {
      adaptiveConcurrency({ algorithm: 'aimd', minLimit: 50, maxLimit: 10, policies: false });
    } catch (error) {
      message = String((error as Error).message);
    }
    expect(message).toMatch(/minLimit|maxLimit/);
    expect(message).not.toMatch(/got undefined/);
  });

  it('hedge budget.minPerSecond: Infinity names the option path budget.minPerSecond and the value', () => {
    let message = '';
    try {
      hedge({ delay: 10, budget: { minPerSecond: Number.POSITIVE_INFINITY }, policies: false });
    } catch (error) {
      message = String((error as Error).message);
    }
    expect(message).toMatch(/budget\.minPerSecond/);
  });

  it('a per-call cost out of range rejects with a HoldfastError (stable code), not a bare RangeError', async () => {
    const limiter = tokenBucket({ limit: 5, policies: false });
    const error = await limiter.execute(async () => 'ran', { key: 'k', cost: 0 }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HoldfastError);
  });
});

describe('review: load-shedding middleware against real servers', () => {
  /** GET `url` on a real socket; resolves with status, content-type and retry-after. */
  async function get(url: string) {
    const res = await fetch(url);
    await res.text();
    return { status: res.status, type: res.headers.get('content-type'), retryAfter: res.headers.get('retry-after') };
  }

  it('express: a bulkhead disposed at shutdown sheds with 503 problem+json, never a 500', async () => {
    const policy = bulkhead({ maxConcurrent: 2, policies: false });
    const app = express();
    app.use(expressShedding({ policy }));
    app.get('/work', (_req, res) => void res.send('ok'));
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/work`;
    try {
      expect((await get(url)).status).toBe(200);
      policy.dispose(); // graceful shutdown begins; the server still answers in-flight traffic
      const shed = await get(url);
      // Observed: 500 text/html (DisposedError E_DISPOSED reaches Express's error handler).
      expect(shed.status).toBe(503);
      expect(shed.type).toMatch(/application\/problem\+json/);
      expect(shed.retryAfter).not.toBeNull();
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('fastify: a bulkhead disposed at shutdown sheds with 503 problem+json, never a 500', async () => {
    const policy = bulkhead({ maxConcurrent: 2, policies: false });
    const app = Fastify({ forceCloseConnections: true });
    await app.register(fastifyShedding, { policy });
    app.get('/work', async () => 'ok');
    await app.listen({ port: 0, host: '127.0.0.1' });
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/work`;
    try {
      expect((await get(url)).status).toBe(200);
      policy.dispose();
      const shed = await get(url);
      // Observed: 500 application/json {"code":"E_DISPOSED",...}.
      expect(shed.status).toBe(503);
      expect(shed.type).toMatch(/application\/problem\+json/);
    } finally {
      await app.close();
    }
  });
  it('express + adaptiveThrottle: a route that answers 503 to everything eventually gets requests shed (E_THROTTLED)', async () => {
    // README: "`policy` is any of the above" (a throttle included); the throttle reacts to what is refused.
    const policy = adaptiveThrottle({ policies: false });
    const app = express();
    app.use(expressShedding({ policy }));
    app.get('/work', (_req, res) => void res.status(503).send('overloaded'));
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/work`;
    let throttled = 0;
    try {
      for (let i = 0; i < 100; i++) {
        const res = await fetch(url);
        const body = await res.text();
        if (body.includes('E_THROTTLED')) throttled++;
      }
    } finally {
      server.closeAllConnections();
      server.close();
    }
    // Observed: 0 of 100: the middleware's held function always resolves, so every request
    // (even a 503 or a thrown route) counts as an accept; probability stays 0.
    expect(policy.snapshot().accepts).toBeLessThan(100);
    expect(throttled).toBeGreaterThan(0);
  });
});

describe('review: chaos', () => {
  it('faultProxy.refuse() resolves while a client keeps a connection open (it refuses NEW connections)', async () => {
    const server = createServer((_req, res) => void res.end('ok'));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const proxy = await faultProxy({ target: { port: (server.address() as AddressInfo).port } });
    const idle = connect(proxy.port, '127.0.0.1'); // an ioredis / pg / keep-alive connection
    await once(idle, 'connect');
    try {
      const outcome = await Promise.race([
        proxy.refuse().then(() => 'resolved'),
        new Promise((r) => setTimeout(() => r('still pending after 1 s'), 1_000)),
      ]);
      // Observed: pending until the client hangs up (net.Server#close waits for open connections).
      expect(outcome).toBe('resolved');
    } finally {
      idle.destroy();
      await proxy.close();
      server.closeAllConnections();
      server.close();
    }
  });

  it('drill maxRecovery fails when the service never recovered before the drill ended', async () => {
    // The dependency dies 700 ms into a 1 s drill and is never restored.
    let dead = false;
    const result = await drill({
      name: 'never restored',
      load: { request: async () => !dead, rate: 50, duration: 1_000, timeout: 500 },
      steps: [{ at: 700, name: 'kill it (no restore)', run: () => void (dead = true) }],
      objectives: { maxRecovery: 1_000 },
      print: false,
    });
    expect(result.load.failed).toBeGreaterThan(0);
    expect(result.load.failed).toBe(result.load.sent - result.load.succeeded);
    // Observed: passed, "recovered in ~300 ms" although every request after 700 ms failed to the end.
    expect(result.passed).toBe(false);
  });

  it('drill: requests the load could not send (skipped) count against maxFailedShare, or the drill does not pass', async () => {
    // A service that takes 200 ms; the load wants 100/s but may hold only 2 in flight.
    const result = await drill({
      name: 'coordinated omission',
      load: {
        request: () => new Promise((r) => setTimeout(() => r(true), 200)),
        rate: 100,
        duration: 1_000,
        concurrency: 2,
      },
      objectives: { maxFailedShare: 0.01 },
      print: false,
    });
    expect(result.load.skipped).toBeGreaterThan(result.load.sent); // most of the planned load never went
    // Observed: passed (failedShare 0) while ~90 % of the planned requests were never sent.
    expect(result.passed).toBe(false);
  });

  it('drill stops by itself when a step never settles (bounded in time)', async () => {
    const run = drill({
      name: 'stuck step',
      load: { request: async () => true, rate: 20, duration: 300 },
      steps: [{ at: 100, name: 'a step that hangs', run: () => new Promise(() => {}) }],
      print: false,
    });
    const outcome = await Promise.race([
      run.then(
        () => 'ended',
        () => 'ended with an error',
      ),
      new Promise((r) => setTimeout(() => r('still running 2 s after its 300 ms duration'), 2_300)),
    ]);
    expect(outcome).toMatch(/^ended/);
  });
});

describe('review: adaptiveThrottle', () => {
  it('calls the caller aborted are not counted as backend refusals (README: "other failures count as accepts")', async () => {
    const clock = new ManualClock(0);
    const throttle = adaptiveThrottle({
      clock,
      policies: false,
      isRejection: (e) => (e as { status?: number }).status === 503,
    });
    // Users hang up on 200 slow calls; the backend refused none of them.
    for (let i = 0; i < 200; i++) {
      const ac = new AbortController();
      const call = throttle.execute(
        ({ signal }) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))),
        { signal: ac.signal },
      );
      ac.abort(new Error('user left'));
      await call.catch(() => undefined);
    }
    // Observed: probability ~0.995; the next healthy call is refused locally with ThrottledError.
    expect(throttle.snapshot().probability).toBe(0);
  });
});

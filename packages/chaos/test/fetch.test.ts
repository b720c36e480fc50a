import { createBus, type HoldfastEvent } from '@holdfast/core';
import { resilientFetch } from '@holdfast/fetch';
import { isNetworkError } from '@holdfast/retry';
import { afterEach, describe, expect, it } from 'vitest';
import { seeded } from '../../../test/support/seeded.js';
import { chaosSwitch, faultyFetch } from '../src/index.js';

afterEach(() => chaosSwitch.on());

/** The "real" fetch underneath: no server, it counts calls and answers 200. */
function backend() {
  const calls: string[] = [];
  const fetch = async (input: string | URL | Request) => {
    calls.push(input instanceof Request ? `${input.method} ${input.url}` : String(input));
    return new Response('x'.repeat(1_000), { status: 200 });
  };
  return { calls, fetch: fetch as typeof globalThis.fetch };
}

const base = 'http://payments.test';

describe('faultyFetch', () => {
  it('a 503 with Retry-After: resilientFetch waits and retries, the second try reaches the backend', async () => {
    const real = backend();
    const bus = createBus();
    const retries: HoldfastEvent[] = [];
    bus.on('retry.attempt', (e) => retries.push(e));
    const api = resilientFetch({
      bus,
      fetch: faultyFetch({
        enabled: true,
        fetch: real.fetch,
        faults: [{ type: 'status', status: 503, headers: { 'retry-after': '0' }, times: 1 }],
      }),
      breaker: false,
    });
    const res = await api(`${base}/charges`);
    expect(res.status).toBe(200);
    expect(real.calls).toHaveLength(1);
    expect(retries).toHaveLength(1);
    api.dispose();
  });

  it('a reset looks like undici: TypeError("fetch failed") with an ECONNRESET cause', async () => {
    const real = backend();
    const faulty = faultyFetch({ enabled: true, fetch: real.fetch, faults: [{ type: 'reset' }] });
    const error = await faulty(`${base}/x`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect(error).toMatchObject({ message: 'fetch failed', cause: { code: 'ECONNRESET', syscall: 'read' } });
    expect(isNetworkError(error)).toBe(true);
    expect(real.calls).toHaveLength(0);
    const refused = await faultyFetch({ enabled: true, faults: [{ type: 'refuse' }] })(`${base}/x`).catch(
      (e: unknown) => e,
    );
    expect(refused).toMatchObject({ message: 'fetch failed', cause: { code: 'ECONNREFUSED' } });
  });

  it('resilientFetch rides out resets on a GET at a seeded 30%: every call ends 200', async () => {
    const real = backend();
    const faulty = faultyFetch({
      enabled: true,
      fetch: real.fetch,
      random: seeded(11),
      faults: [{ type: 'reset', rate: 0.3 }],
    });
    const api = resilientFetch({
      fetch: faulty,
      breaker: false,
      budget: false,
      retry: { maxAttempts: 6, backoff: { type: 'constant', initialDelay: 0 } },
    });
    const statuses = [];
    for (let i = 0; i < 100; i++) statuses.push((await api(`${base}/x`)).status);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(faulty.injected).toBeGreaterThan(15);
    expect(real.calls).toHaveLength(100);
    api.dispose();
  });

  it('a delay meets resilientFetch per-try timeout; a hang settles only on abort', async () => {
    const real = backend();
    const api = resilientFetch({
      fetch: faultyFetch({ enabled: true, fetch: real.fetch, faults: [{ type: 'delay', delay: 5_000 }] }),
      timeout: { perTry: 50, total: 200 },
      retry: { maxAttempts: 2, backoff: { type: 'constant', initialDelay: 0 } },
      breaker: false,
    });
    // Each try hits its 50 ms limit; after two tries the retry gives up with the timeout as cause.
    await expect(api(`${base}/x`)).rejects.toMatchObject({ code: 'E_RETRY_EXHAUSTED', cause: { code: 'E_TIMEOUT' } });
    expect(real.calls).toHaveLength(0);
    api.dispose();

    const hung = faultyFetch({ enabled: true, faults: [{ type: 'hang' }] });
    const controller = new AbortController();
    const pending = hung(`${base}/x`, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('gave up')), 30);
    await expect(pending).rejects.toThrow('gave up');
  });

  it('a slow body trickles in whole; a body reset breaks off after N bytes', async () => {
    const real = backend();
    const slow = faultyFetch({
      enabled: true,
      fetch: real.fetch,
      faults: [{ type: 'slowBody', chunkSize: 100, delay: 10 }],
    });
    const started = performance.now();
    const res = await slow(`${base}/x`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('x'.repeat(1_000));
    expect(performance.now() - started).toBeGreaterThanOrEqual(80);

    const broken = faultyFetch({
      enabled: true,
      fetch: real.fetch,
      faults: [{ type: 'reset', phase: 'body', after: 300 }],
    });
    const partial = await broken(`${base}/x`);
    const error = await partial.text().catch((e: unknown) => e);
    expect(error).toMatchObject({ message: 'terminated', cause: { code: 'ECONNRESET' } });
  });

  it('match and times pick which requests; off by default, and the kill switch turns it off', async () => {
    const real = backend();
    const faulty = faultyFetch({
      enabled: true,
      fetch: real.fetch,
      faults: [{ type: 'status', status: 500, match: (r) => r.method === 'POST', times: 2 }],
    });
    expect((await faulty(`${base}/x`)).status).toBe(200);
    expect((await faulty(`${base}/x`, { method: 'POST', body: '{}' })).status).toBe(500);
    chaosSwitch.off();
    expect((await faulty(`${base}/x`, { method: 'POST', body: '{}' })).status).toBe(200);
    chaosSwitch.on();
    expect((await faulty(`${base}/x`, { method: 'POST', body: '{}' })).status).toBe(500);
    expect((await faulty(`${base}/x`, { method: 'POST', body: '{}' })).status).toBe(200); // times: 2 spent
    expect(faulty.injected).toBe(2);
    const off = faultyFetch({ fetch: real.fetch, faults: [{ type: 'refuse' }] });
    expect((await off(`${base}/x`)).status).toBe(200);
    expect(() => faultyFetch({ faults: [] })).toThrow(/faults/);
    expect(() => faultyFetch({ faults: [{ type: 'status', status: 99 }] })).toThrow(/faults.0.status/);
  });

  it('reports each fault as chaos.inject (kind fetch)', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('chaos.inject', (e) => events.push(e));
    const faulty = faultyFetch({
      enabled: true,
      bus,
      fetch: backend().fetch,
      faults: [
        { type: 'delay', delay: 1 },
        { type: 'status', status: 429 },
      ],
    });
    await faulty(`${base}/x`);
    expect(events).toMatchObject([
      { type: 'chaos.inject', source: 'faultyFetch', kind: 'fetch', detail: '+1 ms' },
      { kind: 'fetch', detail: '429' },
    ]);
  });
});

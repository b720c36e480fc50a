import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createBus, HoldfastConfigError } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';

/** A loopback server that answers `name` after `delay` ms and counts what a test checks. */
interface Counted {
  readonly url: string;
  readonly host: string;
  /** Requests received. */
  received: number;
  /** Requests the client closed before the answer was sent (an aborted hedge loser). */
  closedByClient: number;
  /** Most requests in flight at once. */
  maxInFlight: number;
  inFlight: number;
  /** Idempotency-Key headers seen, in order. */
  readonly keys: (string | undefined)[];
  close(): Promise<void>;
}

const open: Counted[] = [];
const made: ResilientFetch[] = [];

afterEach(async () => {
  for (const http of made.splice(0)) http.dispose();
  await Promise.all(open.splice(0).map((s) => s.close()));
});

/** `delay`: ms, or ms for the n-th request (1-based). */
async function counted(name: string, delay: number | ((n: number) => number)): Promise<Counted> {
  const sockets = new Set<Socket>();
  const state = { received: 0, closedByClient: 0, maxInFlight: 0, inFlight: 0, keys: [] as (string | undefined)[] };
  const server: Server = createServer((req, res) => {
    state.received++;
    state.inFlight++;
    state.maxInFlight = Math.max(state.maxInFlight, state.inFlight);
    const key = req.headers['idempotency-key'];
    state.keys.push(typeof key === 'string' ? key : undefined);
    req.resume();
    const wait = typeof delay === 'number' ? delay : delay(state.received);
    const timer = setTimeout(() => res.end(`${name}${typeof delay === 'number' ? '' : state.received}`), wait);
    res.on('close', () => {
      clearTimeout(timer);
      state.inFlight--;
      if (!res.writableFinished) state.closedByClient++;
    });
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const upstream = Object.assign(state, {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  });
  open.push(upstream);
  return upstream;
}

function client(options: ResilientFetchOptions): ResilientFetch {
  const http = resilientFetch({ bus: createBus(), ...options });
  made.push(http);
  return http;
}

/** Runs `total` calls, `parallel` at a time; returns each call's body (or error code) and latency. */
async function load(total: number, parallel: number, call: () => Promise<string>) {
  const results: { body: string; ms: number }[] = [];
  let next = 0;
  const worker = async () => {
    while (next < total) {
      next++;
      const start = performance.now();
      const body = await call().catch(
        (error: { code?: string; message: string }) => `error:${error.code ?? error.message}`,
      );
      results.push({ body, ms: performance.now() - start });
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return results;
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

/** Waits until the servers have seen every client-side close (they arrive after the call settles). */
async function settle(...servers: Counted[]): Promise<void> {
  for (let i = 0; i < 50 && servers.some((s) => s.inFlight > 0); i++) await new Promise((r) => setTimeout(r, 20));
}

describe('resilientFetch: hedge', () => {
  it('with one of three upstreams 10x slower, a hedge to another host answers nearly every GET; losers are aborted', async () => {
    const fast1 = await counted('fast1', 30);
    const fast2 = await counted('fast2', 30);
    const slow = await counted('slow', 300);
    const baseUrls = [fast1.url, fast2.url, slow.url];
    const get = (http: ResilientFetch) => () => http('/item').then((r) => r.text());

    const plain = client({ baseUrls });
    const unhedged = await load(60, 6, get(plain));
    const hedged = client({ baseUrls, hedge: { delay: 100, budget: { ratio: 0.5 } } });
    const slowBefore = slow.received;
    const results = await load(60, 6, get(hedged));
    await settle(fast1, fast2, slow);

    const p99 = (rs: { ms: number }[]) =>
      percentile(
        rs.map((r) => r.ms),
        0.99,
      ).toFixed(0);
    console.log(
      `hedge: 60 GETs over 3 upstreams (30/30/300 ms), 6 at a time: p99 ${p99(unhedged)} ms unhedged, ${p99(results)} ms hedged`,
    );
    const answeredFast = results.filter((r) => r.body.startsWith('fast')).length;
    const snap = (hedged.snapshot() as { hedge: { hedges: number; hedgeWins: number; losersAborted: number } }).hedge;
    console.log(
      `hedge: answered by a fast upstream ${answeredFast}/60, hedges ${snap.hedges}, wins ${snap.hedgeWins}, losers aborted ${snap.losersAborted}, slow server saw ${slow.received - slowBefore} requests, ${slow.closedByClient} closed by the client`,
    );
    expect(results.every((r) => !r.body.startsWith('error'))).toBe(true);
    expect(unhedged.filter((r) => r.body === 'slow').length).toBeGreaterThanOrEqual(15); // round-robin: a third
    expect(answeredFast).toBeGreaterThanOrEqual(57);
    const sentToSlow = slow.received - slowBefore;
    expect(sentToSlow).toBeGreaterThanOrEqual(15);
    // Every request the slow server got and did not answer was closed by the client, as a loser.
    // Most requests the slow server got were closed by the client as losers; on a loaded machine a
    // hedge can take longer than the slow answer, which then arrives and is dropped unread.
    expect(slow.closedByClient).toBeGreaterThanOrEqual(Math.floor(0.75 * sentToSlow));
    expect(snap.losersAborted).toBeGreaterThanOrEqual(slow.closedByClient);
    expect(snap.hedgeWins).toBeGreaterThanOrEqual(Math.floor(0.6 * sentToSlow));
  });

  it('never hedges a POST without an idempotency key; hedges one with a key, sending the same key', async () => {
    const a = await counted('a', 80);
    const b = await counted('b', 80);
    const http = client({ baseUrls: [a.url, b.url], hedge: { delay: 10, budget: false } });
    for (let i = 0; i < 5; i++)
      expect(await (await http('/orders', { method: 'POST', body: '{}' })).text()).toMatch(/a|b/);
    expect(a.received + b.received).toBe(5);
    expect((http.snapshot() as { hedge: { hedges: number } }).hedge.hedges).toBe(0);

    await http('/orders', { method: 'POST', body: '{}', headers: { 'Idempotency-Key': 'k-1' } });
    await settle(a, b);
    expect(a.received + b.received).toBe(7); // the first try and its hedge, on the other host
    expect([...a.keys, ...b.keys].filter((k) => k === 'k-1')).toHaveLength(2);
    expect(a.received).toBeGreaterThanOrEqual(3);
    expect(b.received).toBeGreaterThanOrEqual(3);
  });

  it('keeps hedges within the budget when every upstream is slow', async () => {
    const a = await counted('a', 60);
    const b = await counted('b', 60);
    const http = client({ baseUrls: [a.url, b.url], hedge: { delay: 5, budget: { ratio: 0.1, minPerSecond: 0 } } });
    const results = await load(60, 10, () => http('/x').then((r) => r.text()));
    await settle(a, b);
    const snap = (http.snapshot() as { hedge: { calls: number; hedges: number; refused: number } }).hedge;
    console.log(
      `hedge budget 10%: 60 calls, ${snap.hedges} hedges, ${snap.refused} refused, ${a.received + b.received} requests sent`,
    );
    expect(results.every((r) => r.body === 'a' || r.body === 'b')).toBe(true);
    expect(snap.calls).toBe(60);
    expect(snap.hedges).toBeLessThanOrEqual(6);
    expect(snap.refused).toBeGreaterThan(40);
    expect(a.received + b.received).toBe(60 + snap.hedges);
  });

  it('with one upstream killed and one slow, every hedged GET is answered, by the live fast one', async () => {
    const dead = await counted('dead', 0);
    const slow = await counted('slow', 300);
    const fast = await counted('fast', 10);
    const http = client({ baseUrls: [dead.url, slow.url, fast.url], hedge: { delay: 50, budget: { ratio: 1 } } });
    await dead.close();
    const results = await load(30, 3, () => http('/x').then((r) => r.text()));
    await settle(slow, fast);
    const fastAnswers = results.filter((r) => r.body === 'fast').length;
    console.log(
      `hedge with a killed and a slow upstream: 30 GETs, ${fastAnswers} answered by the fast one, slow saw ${slow.received}, ${slow.closedByClient} closed by the client`,
    );
    expect(results.every((r) => r.body === 'fast' || r.body === 'slow')).toBe(true);
    expect(fastAnswers).toBeGreaterThanOrEqual(27);
  });

  it('the caller abort stops every hedged attempt at once', async () => {
    const a = await counted('a', 2000);
    const b = await counted('b', 2000);
    const http = client({ baseUrls: [a.url, b.url], hedge: { delay: 20, budget: false } });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('caller gave up')), 150);
    await expect(http('/x', { signal: controller.signal })).rejects.toThrow('caller gave up');
    await settle(a, b);
    expect(a.received + b.received).toBe(2); // the try and one hedge, on the other host
    expect(a.closedByClient + b.closedByClient).toBe(2);
  });

  it('without base URLs, hedges a GET to the same URL and the first answer wins', async () => {
    const a = await counted('a', (n) => (n === 1 ? 2000 : 10));
    const http = client({ hedge: { delay: 20, maxHedges: 1, budget: false } });
    expect(await (await http(`${a.url}/x`)).text()).toBe('a2'); // the hedge's answer
    await settle(a);
    expect(a.received).toBe(2);
    expect(a.closedByClient).toBe(1);
  });
});

describe('resilientFetch: concurrency per host', () => {
  it('a host never sees more than maxConcurrent requests at once under 200 concurrent calls', async () => {
    const a = await counted('a', 10);
    const http = client({ concurrency: { bulkhead: { maxConcurrent: 4, maxQueue: 200 } } });
    const results = await Promise.all(Array.from({ length: 200 }, () => http(`${a.url}/x`).then((r) => r.text())));
    console.log(`bulkhead 4: 200 concurrent calls, server saw at most ${a.maxInFlight} at once, ${a.received} in all`);
    expect(results.every((b) => b === 'a')).toBe(true);
    expect(a.received).toBe(200);
    expect(a.maxInFlight).toBe(4);
    const snap = http.snapshot() as { concurrency: Record<string, { maxConcurrent: number; running: number }> };
    expect(snap.concurrency[a.host]).toMatchObject({ maxConcurrent: 4, running: 0 });
  });

  it('a full host sends calls to another base URL, never retries there, and its breaker stays closed', async () => {
    const a = await counted('a', 30);
    const b = await counted('b', 30);
    const http = client({
      baseUrls: [a.url, b.url],
      concurrency: { bulkhead: { maxConcurrent: 3 } },
      breaker: { defaults: { consecutiveFailures: 2 } },
      budget: false,
    });
    const bodies = await Promise.all(
      Array.from({ length: 200 }, () =>
        http('/x')
          .then((r) => r.text())
          .catch((e: { code?: string }) => `error:${e.code}`),
      ),
    );
    const count = (body: string) => bodies.filter((x) => x === body).length;
    console.log(
      `bulkhead 3 per host, 2 hosts: 200 concurrent calls: a ${count('a')}, b ${count('b')}, refused ${count('error:E_BULKHEAD_FULL')}; max at once a ${a.maxInFlight}, b ${b.maxInFlight}`,
    );
    expect(a.maxInFlight).toBeLessThanOrEqual(3);
    expect(b.maxInFlight).toBeLessThanOrEqual(3);
    expect(count('a')).toBe(3); // half the calls were first sent to a: only 3 ran there, 3 more found room on b
    expect(count('b')).toBe(3);
    expect(count('error:E_BULKHEAD_FULL')).toBe(194);
    expect(a.received + b.received).toBe(6); // a refusal is never sent, nor retried on the same host
    const snap = http.snapshot() as {
      breakers: { breakers: Record<string, { state: string; window: { failures: number } }> };
      failover: { endpoints: { ejection: string }[] };
    };
    for (const host of [a.host, b.host]) {
      expect(snap.breakers.breakers[host]).toMatchObject({ state: 'closed', window: { failures: 0 } });
    }
    expect(snap.failover.endpoints.map((e) => e.ejection)).toEqual(['none', 'none']);
    // Once the load is gone, both hosts answer again.
    expect(await (await http('/x')).text()).toMatch(/a|b/);
  });

  it('adaptive: refusals (E_CONCURRENCY_LIMIT) move to the other host; the cap holds at the server', async () => {
    const a = await counted('a', 20);
    const b = await counted('b', 20);
    const http = client({
      baseUrls: [a.url, b.url],
      concurrency: { adaptive: { algorithm: 'aimd', initialLimit: 5, maxLimit: 5 } },
    });
    const bodies = await Promise.all(
      Array.from({ length: 200 }, () =>
        http('/x')
          .then((r) => r.text())
          .catch((e: { code?: string }) => `error:${e.code}`),
      ),
    );
    expect(a.maxInFlight).toBeLessThanOrEqual(5);
    expect(b.maxInFlight).toBeLessThanOrEqual(5);
    expect(bodies.filter((x) => x === 'a' || x === 'b')).toHaveLength(10);
    expect(bodies.filter((x) => x === 'error:E_CONCURRENCY_LIMIT')).toHaveLength(190);
    expect(a.received + b.received).toBe(10);
  });

  it('keeps at most maxHosts limiters, and dispose() clears them', async () => {
    const servers = await Promise.all([counted('a', 0), counted('b', 0), counted('c', 0)]);
    const http = client({ concurrency: { bulkhead: { maxConcurrent: 2 }, maxHosts: 2 } });
    for (const s of servers)
      expect(await (await http(`${s.url}/x`)).text()).toBe(s === servers[0] ? 'a' : s === servers[1] ? 'b' : 'c');
    const hosts = Object.keys((http.snapshot() as { concurrency: Record<string, unknown> }).concurrency);
    expect(hosts).toEqual([servers[1]?.host, servers[2]?.host]);
    http.dispose();
    expect((http.snapshot() as { concurrency: Record<string, unknown> }).concurrency).toEqual({});
  });
});

describe('resilientFetch: hedge and concurrency options', () => {
  it('names a bad option and its value at construction', () => {
    expect(() => resilientFetch({ hedge: { delay: -1 } })).toThrow(/resilientFetch: hedge\.delay/);
    expect(() => resilientFetch({ hedge: 5 as never })).toThrow(HoldfastConfigError);
    expect(() => resilientFetch({ hedge: { delay: 10, maxHedges: 0 } })).toThrow(/hedge\.maxHedges/);
    expect(() => resilientFetch({ concurrency: { bulkhead: { maxConcurrent: 0 } } })).toThrow(
      /resilientFetch: concurrency\.bulkhead\.maxConcurrent/,
    );
    expect(() => resilientFetch({ concurrency: { adaptive: { algorithm: 'nope' } as never } })).toThrow(
      /resilientFetch: concurrency\.adaptive/,
    );
    expect(() => resilientFetch({ concurrency: { bulkhead: { maxConcurrent: 1 }, maxHosts: 0 } })).toThrow(
      /concurrency/,
    );
    expect(() => resilientFetch({ concurrency: { limit: 3 } as never })).toThrow(/resilientFetch: concurrency/);
  });
});

describe('resilientFetch: a bad retry, breaker, hedge or concurrency option says what was expected', () => {
  const refusal = (options: unknown) => {
    try {
      resilientFetch({ bus: createBus(), ...(options as ResilientFetchOptions) }).dispose();
      return 'accepted';
    } catch (error) {
      return error instanceof HoldfastConfigError ? error.message : `not a config error: ${String(error)}`;
    }
  };

  it('the wrong kind of value: named, with what it must be (not "Invalid input")', () => {
    expect(
      [
        { retry: 'yes' },
        { retry: true },
        { breaker: true },
        { breaker: [] },
        { hedge: 5 },
        { hedge: true },
        { hedge: {} },
        { hedge: { delay: 'soon' } },
        { concurrency: true },
        { concurrency: { bulkhead: 3 } },
      ].map(refusal),
    ).toEqual([
      'resilientFetch: retry must be false or { maxAttempts, backoff, jitter, statuses } (got "yes")',
      'resilientFetch: retry must be false or { maxAttempts, backoff, jitter, statuses } (got true)',
      'resilientFetch: breaker must be false, a breakerRegistry(), or breakerRegistry options (got true)',
      'resilientFetch: breaker must be false, a breakerRegistry(), or breakerRegistry options (got [])',
      'resilientFetch: hedge must be false or hedge() options, e.g. { delay: 50 } (got 5)',
      'resilientFetch: hedge must be false or hedge() options, e.g. { delay: 50 } (got true)',
      'resilientFetch: hedge.delay must be ms (a number) or { percentile } (got undefined)',
      'resilientFetch: hedge.delay must be ms (a number) or { percentile } (got "soon")',
      'resilientFetch: concurrency must be false, { bulkhead } or { adaptive } (got true)',
      'resilientFetch: concurrency.bulkhead must be bulkhead() options (got 3)',
    ]);
  });

  it('an option resilientFetch decides itself is refused where it would be ignored', () => {
    const bus = createBus();
    expect(
      [
        // Before the fix: accepted, and a POST without a key still never hedged.
        { hedge: { delay: 50, safe: true } },
        { hedge: { delay: 50, bus } },
        { hedge: { delay: 50, onFailure: true } },
        { breaker: { clock: {} } },
        { concurrency: { bulkhead: { maxConcurrent: 1, name: 'mine' } } },
      ].map(refusal),
    ).toEqual([
      'resilientFetch: hedge.safe is decided per request: one safe to repeat (an idempotent method, or an idempotency key) is hedged, no other (got true)',
      "resilientFetch: hedge.bus is resilientFetch's own option: give it there (got {})",
      'resilientFetch: hedge.onFailure is off here: a failed try is retried as `retry` says, never hedged at once (got true)',
      "resilientFetch: breaker.clock is resilientFetch's own option: give it there (got {})",
      'resilientFetch: concurrency.bulkhead.name is resilientFetch\'s own option: give it there (got "mine")',
    ]);
  });
});

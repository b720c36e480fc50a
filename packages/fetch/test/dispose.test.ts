import type { ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';
import { breakerRegistry } from '@holdfast/breaker';
import { createBus, ManualClock } from '@holdfast/core';
import { retryBudget } from '@holdfast/retry';
import { describe, expect, it, vi } from 'vitest';
import { runScript } from '../../../test/support/child.js';
import type { ResilientFetchOptions } from '../src/index.js';
import { perTest, reply, sequence } from './upstream.js';

const t = perTest();

/**
 * What a call has come to: `pending` if it has not settled within `ms` of real time. The waits
 * these tests cut run on a ManualClock that is never advanced meanwhile: unless dispose() ends
 * them, they never end, so `ms` is only how long a loaded machine may take to settle a promise.
 */
async function outcome(call: Promise<Response>, ms = 5_000): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => {
    timer = setTimeout(() => resolve('pending'), ms);
  });
  try {
    return await Promise.race([
      call.then(
        (res) => `status ${res.status}`,
        (error: { code?: string; name?: string }) => `error ${error.code ?? error.name}`,
      ),
      late,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A handler that holds every request unanswered; `closed` counts those the client closed. */
function holding() {
  const held: ServerResponse[] = [];
  const counts = { closed: 0 };
  return {
    counts,
    handler: (_: unknown, res: ServerResponse) => {
      held.push(res);
      res.on('close', () => {
        if (!res.writableEnded) counts.closed++;
      });
    },
    /** Answers every request held so far. */
    release() {
      for (const res of held.splice(0)) if (!res.destroyed) res.end('late');
    },
  };
}

/** A client on a ManualClock; `retrying()` resolves once the call's retry has set off its wait. */
function clientOn(options: ResilientFetchOptions) {
  const clock = new ManualClock(0);
  const bus = createBus();
  const http = t.client({ clock, bus, ...options });
  // Not a failover set's own move to the next base URL, which it reports as a retry.attempt too.
  const retrying = () =>
    new Promise<void>((resolve) => bus.on('retry.attempt', (e) => e.source === 'fetch.retry' && resolve()));
  return { http, clock, retrying };
}

const long = { timeout: { perTry: 60_000, total: 120_000 } } as const;

describe('dispose() with calls waiting to send again', { timeout: 30_000 }, () => {
  it.each([
    ['with the breakers', {}],
    ['without breakers', { breaker: false }],
  ] as const)(
    'a call waiting on Retry-After rejects at once with E_DISPOSED and never sends again (%s)',
    async (_, extra) => {
      const s = await t.server(sequence(reply(503, { 'retry-after': '30' }), reply(200)));
      const { http, clock, retrying } = clientOn({ ...long, ...extra, retry: { backoff: { maxDelay: 60_000 } } });
      const waiting = retrying();
      const call = http(`${s.url}/orders`);
      await waiting; // the 503 came, the call waits 30 s to send again
      http.dispose();
      expect(await outcome(call)).toBe('error E_DISPOSED');
      expect(clock.pending).toBe(0); // no timer left: nothing holds the process open
      await clock.advance(120_000);
      expect(s.seen).toHaveLength(1);
    },
  );

  it('a call in the backoff between retries rejects at once and never sends again', async () => {
    const s = await t.server(reply(503));
    const { http, clock, retrying } = clientOn({
      ...long,
      breaker: false,
      retry: { maxAttempts: 5, jitter: 'none', backoff: { initialDelay: 30_000, maxDelay: 60_000 } },
    });
    const waiting = retrying();
    const call = http(`${s.url}/orders`);
    await waiting;
    http.dispose();
    expect(await outcome(call)).toBe('error E_DISPOSED');
    expect(clock.pending).toBe(0);
    await clock.advance(120_000);
    expect(s.seen).toHaveLength(1);
  });

  it('with base URLs: a call waiting to run over the set again rejects at once; no base URL is asked again', async () => {
    const a = await t.server(reply(503, { 'retry-after': '30' }));
    const b = await t.server(reply(503, { 'retry-after': '30' }));
    const { http, clock, retrying } = clientOn({
      ...long,
      baseUrls: [a.url, b.url],
      retry: { backoff: { maxDelay: 60_000 } },
    });
    const waiting = retrying();
    const call = http('/orders');
    await waiting; // both answered 503: the set runs again in 30 s
    http.dispose();
    expect(await outcome(call)).toBe('error E_DISPOSED');
    expect(clock.pending).toBe(0);
    await clock.advance(120_000);
    expect(a.seen.length + b.seen.length).toBe(2);
  });

  it('calls queued behind the per-host limit reject at once and are never sent', async () => {
    const hold = holding();
    const s = await t.server(hold.handler);
    const { http, clock } = clientOn({ ...long, concurrency: { bulkhead: { maxConcurrent: 1, maxQueue: 5 } } });
    const first = http(`${s.url}/a`);
    await vi.waitFor(() => expect(s.seen).toHaveLength(1), { timeout: 10_000 });
    const queued = [http(`${s.url}/b`), http(`${s.url}/c`)];
    const queuedNow = () => (http.snapshot() as { concurrency: Record<string, { queued: number }> }).concurrency;
    await vi.waitFor(() => expect(queuedNow()[s.host]?.queued).toBe(2), { timeout: 10_000 });
    http.dispose();
    expect(await Promise.all(queued.map((q) => outcome(q)))).toEqual(['error E_DISPOSED', 'error E_DISPOSED']);
    expect(await outcome(first)).toBe('error E_DISPOSED'); // it was on the wire: aborted
    await vi.waitFor(() => expect(hold.counts.closed).toBe(1), { timeout: 10_000 });
    hold.release();
    expect(clock.pending).toBe(0);
    await clock.advance(120_000);
    expect(s.seen.map((r) => r.path)).toEqual(['/a']);
  });

  it('a call waiting out its hedge delay rejects at once and sends no hedge', async () => {
    const hold = holding();
    const s = await t.server(hold.handler);
    const { http, clock } = clientOn({ ...long, hedge: { delay: 30_000, budget: false } });
    const call = http(`${s.url}/orders`);
    await vi.waitFor(() => expect(s.seen).toHaveLength(1), { timeout: 10_000 });
    http.dispose();
    expect(await outcome(call)).toBe('error E_DISPOSED');
    expect(clock.pending).toBe(0);
    await clock.advance(120_000);
    await vi.waitFor(() => expect(hold.counts.closed).toBe(1), { timeout: 10_000 });
    expect(s.seen).toHaveLength(1);
    expect((http.snapshot() as { hedge: { hedges: number } }).hedge.hedges).toBe(0);
  });
});

describe('dispose() with a Request whose body is still being read', { timeout: 30_000 }, () => {
  it('rejects at once with E_DISPOSED, cancels the read and sends nothing', async () => {
    const s = await t.server(reply(200));
    const { http } = clientOn(long);
    let cancelled: unknown;
    const upload = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode('part of it')); // and the rest never comes
      },
      cancel(reason) {
        cancelled = reason;
      },
    });
    const call = http(new Request(`${s.url}/upload`, { method: 'PUT', body: upload, duplex: 'half' } as RequestInit));
    await new Promise((resolve) => setImmediate(resolve)); // the read has begun
    http.dispose();
    expect(await outcome(call)).toBe('error E_DISPOSED');
    expect((cancelled as { code?: string } | undefined)?.code).toBe('E_DISPOSED');
    expect(s.seen).toHaveLength(0);
  });
});

describe('dispose() with a request on the wire', { timeout: 30_000 }, () => {
  it('aborts it: the call rejects with E_DISPOSED and the server sees the connection closed', async () => {
    const hold = holding();
    const s = await t.server(hold.handler);
    const { http, clock } = clientOn({ ...long, breaker: false });
    const call = http(`${s.url}/orders`);
    await vi.waitFor(() => expect(s.seen).toHaveLength(1), { timeout: 10_000 });
    http.dispose();
    expect(await outcome(call)).toBe('error E_DISPOSED');
    await vi.waitFor(() => expect(hold.counts.closed).toBe(1), { timeout: 10_000 });
    expect(clock.pending).toBe(0);
    await clock.advance(120_000);
    expect(s.seen).toHaveLength(1);
  });

  it('is no failure of the host to a breaker registry the caller shares', async () => {
    const hold = holding();
    const s = await t.server(hold.handler);
    const breaker = breakerRegistry({ bus: createBus() });
    try {
      const { http } = clientOn({ ...long, breaker });
      const call = http(`${s.url}/orders`);
      await vi.waitFor(() => expect(s.seen).toHaveLength(1), { timeout: 10_000 });
      http.dispose();
      expect(await outcome(call)).toBe('error E_DISPOSED');
      const snap = breaker.snapshot() as { breakers: Record<string, { state: string; window: { failures: number } }> };
      expect(Object.values(snap.breakers).map((b) => [b.state, b.window.failures])).toEqual([['closed', 0]]);
    } finally {
      breaker.dispose();
    }
  });

  it('leaves a response already returned to its caller: its body reads on', async () => {
    let body: ServerResponse | undefined;
    const s = await t.server((_, res) => {
      res.writeHead(200);
      res.write('first ');
      body = res;
    });
    const { http } = clientOn(long);
    const res = await http(`${s.url}/orders`);
    http.dispose();
    body?.end('and last');
    expect(await res.text()).toBe('first and last');
  });
});

describe('calls made after dispose()', { timeout: 30_000 }, () => {
  it.each([
    ['the defaults', {}],
    ['no breakers', { breaker: false }],
    ['no breakers, no retries', { breaker: false, retry: false, budget: false }],
    ['a breaker registry and a budget of the caller', 'shared'],
    ['base URLs', 'baseUrls'],
    ['a hedge', { hedge: { delay: 1_000 } }],
    ['a per-host limit', { concurrency: { bulkhead: { maxConcurrent: 2 } } }],
  ] as const)('reject with E_DISPOSED and send nothing (%s)', async (_, extra) => {
    const s = await t.server(reply(200));
    const shared = { breaker: breakerRegistry({ bus: createBus() }), budget: retryBudget({}) };
    try {
      const options: ResilientFetchOptions =
        extra === 'shared' ? shared : extra === 'baseUrls' ? { baseUrls: [s.url] } : extra;
      const http = t.client(options);
      http.dispose();
      const path = extra === 'baseUrls' ? '/orders' : `${s.url}/orders`;
      expect(await outcome(http(path))).toBe('error E_DISPOSED');
      expect(await outcome(http(new Request(`${s.url}/orders`, { method: 'PUT', body: 'x' })))).toBe(
        'error E_DISPOSED',
      );
      expect(s.seen).toHaveLength(0);
    } finally {
      shared.breaker.dispose();
      shared.budget.dispose();
    }
  });
});

describe('a call made just before dispose()', { timeout: 30_000 }, () => {
  it.each([
    ['a URL', (url: string) => url],
    ['a Request with a body', (url: string) => new Request(url, { method: 'PUT', body: 'x' })],
  ] as const)('in the same tick (%s): rejects with E_DISPOSED and sends nothing', async (_, input) => {
    const s = await t.server(reply(200));
    const { http } = clientOn({ breaker: false, retry: false });
    const call = http(input(`${s.url}/orders`));
    http.dispose();
    expect(await outcome(call)).toBe('error E_DISPOSED');
    expect(s.seen).toHaveLength(0);
  });
});

describe('process exit', () => {
  it('a client disposed while a call waits on a 30 s Retry-After: the call rejects with E_DISPOSED and the process exits on its own', async () => {
    const script = fileURLToPath(new URL('./fixtures/dispose-exit.ts', import.meta.url));
    const result = await runScript(script, { cwd: fileURLToPath(new URL('..', import.meta.url)), killAfterMs: 20_000 });
    expect(result.stderr).toBe('');
    expect(result.killed).toBe(false);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout.trim())).toEqual({ call: 'error E_DISPOSED', received: 1 });
  }, 60_000);
});

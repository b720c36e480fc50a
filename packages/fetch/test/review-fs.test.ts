/**
 * A hostile review of resilientFetch with a failover set of the user's own (and over baseUrls),
 * against real local HTTP servers, each try counted where it lands: what fetch refuses to send
 * is never retried nor held against an endpoint, `maxAttempts` bounds every try (hedges, an
 * active-passive set in panic, a caller's abort), and a path joined to a base URL reaches no
 * other host, nor does an absolute URL unless it lies under the base URL.
 */
import { createBus, HoldfastConfigError, type HoldfastEvent } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { retryBudget } from '@holdfast/retry';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';
import { type Handler, type Upstream, upstream } from './upstream.js';

const made: { dispose(): void }[] = [];
const servers: Upstream[] = [];

afterEach(async () => {
  for (const thing of made.splice(0)) thing.dispose();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(handler?: Handler): Promise<Upstream> {
  const s = await upstream(handler);
  servers.push(s);
  return s;
}

function client(options: ResilientFetchOptions): ResilientFetch {
  const http = resilientFetch({ bus: createBus(), ...options });
  made.push(http);
  return http;
}

function userSet(urls: string[], extra: Partial<Parameters<typeof failover<string>>[0]> = {}): Failover<string> {
  const set = failover<string>({ endpoints: urls, bus: createBus(), ...extra });
  made.push(set);
  return set;
}

const sum = (list: Upstream[]) => list.reduce((n, s) => n + s.seen.length, 0);
const quick = { backoff: { type: 'constant' as const, initialDelay: 1 } };
const down: Handler = (_, res) => {
  res.statusCode = 503;
  res.end('down');
};

describe('a URL of a scheme fetch will not fetch (file:, about:, blob:) is refused once, held against nothing', () => {
  const refused = ['file:///etc/hostname', 'file://h/x', 'about://x/', 'blob://x/y'];

  it('without base URLs: one try, no retry, no breaker failure', async () => {
    const bus = createBus();
    const seen: string[] = [];
    bus.on('*', (e: HoldfastEvent) => seen.push(e.type));
    const http = client({ bus, retry: quick });
    for (const url of refused) {
      const error = await http(url).catch((e: unknown) => e);
      expect(error, url).toBeInstanceOf(TypeError);
      expect((error as Error).message, url).toMatch(/^fetch failed: /);
    }
    const wasted = ['retry.attempt', 'retry.budgetExhausted', 'breaker.failure'];
    expect(seen.filter((t) => wasted.includes(t))).toEqual([]);
  });

  for (const via of ['baseUrls', 'a set of the user'] as const) {
    it(`over ${via}: ejects no healthy endpoint, and no healthy endpoint is asked for it`, async () => {
      const list = [await server(), await server()];
      const urls = list.map((s) => s.url);
      const set = userSet(urls); // ejection on: 5 consecutive failures
      const http = client(via === 'baseUrls' ? { baseUrls: urls, retry: quick } : { failover: set, retry: quick });
      for (let i = 0; i < 12; i++) {
        const url = refused[i % refused.length] as string;
        await expect(http(url), url).rejects.toThrow(TypeError);
      }
      const snap =
        via === 'baseUrls'
          ? (http.snapshot() as { failover: ReturnType<Failover<string>['snapshot']> }).failover
          : set.snapshot();
      expect(snap.endpoints.map((e) => `${e.ejection} ${e.ejections}`)).toEqual(['none 0', 'none 0']);
      expect(sum(list)).toBe(0);
      for (let i = 0; i < 4; i++) expect((await http('/ok')).status).toBe(200);
    });
  }
});

describe('a set whose retryOn answers with a promise', () => {
  it('is not read as "retry": an async retryOn that says no sends a failed POST to one endpoint only', async () => {
    const list = [await server(down), await server(down), await server(down)];
    const set = userSet(
      list.map((s) => s.url),
      { ejection: false, retry: { maxAttempts: 3, retryOn: (async () => false) as never, budget: false } },
    );
    const tried: string[] = [];
    const error = await set
      .execute(async (e) => {
        tried.push(e.name);
        const res = await fetch(`${e.target}/charges`, { method: 'POST', body: '{"amount":42}' });
        throw new Error(`charge failed: ${res.status}`);
      })
      .catch((e: unknown) => e);
    expect((error as Error).message).toBe('charge failed: 503');
    expect(sum(list)).toBe(1); // one charge attempted, as retryOn said
  });

  it("a call's own async retryOn that rejects retries nothing and leaves no unhandled rejection", async () => {
    const list = [await server(down), await server(down)];
    const set = userSet(
      list.map((s) => s.url),
      { ejection: false },
    );
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const retryOn = (async () => {
        throw new Error('retryOn bug');
      }) as never;
      const error = await set
        .execute(
          async (e) => {
            const res = await fetch(`${e.target}/x`);
            throw new Error(`failed: ${res.status}`);
          },
          { retry: { maxAttempts: 2, retryOn, budget: false } },
        )
        .catch((e: unknown) => e);
      expect((error as Error).message).toBe('failed: 503');
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
      expect(sum(list)).toBe(1);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('an async ignore (or isFailure) decides nothing it cannot answer at once, and never goes unhandled', async () => {
    const list = [await server(down), await server(down)];
    const set = userSet(
      list.map((s) => s.url),
      { retry: false, ejection: { consecutiveFailures: 2 }, isFailure: (async () => false) as never },
    );
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      const ignore = (async () => {
        throw new Error('ignore bug');
      }) as never;
      for (let i = 0; i < 6; i++) {
        await expect(
          set.execute(
            async (e) => {
              const res = await fetch(`${e.target}/x`);
              throw new Error(`failed: ${res.status}`);
            },
            { ignore },
          ),
        ).rejects.toThrow('failed: 503');
      }
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).toEqual([]);
      // Neither said "this says nothing of the endpoint": the 503s count, and eject.
      expect(set.snapshot().endpoints.some((e) => e.ejection === 'ejected')).toBe(true);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe("maxAttempts bounds every try through a user's set, as over baseUrls", () => {
  const downAfter =
    (ms: number): Handler =>
    (_, res) => {
      setTimeout(() => {
        res.statusCode = 503;
        res.end('down');
      }, ms);
    };
  const slowDown = downAfter(30);

  it('with hedges and idempotency keys: a keyed POST failing everywhere is sent as often as over baseUrls, hedges on top', async () => {
    for (const maxAttempts of [1, 2, 3]) {
      const counts: Record<string, number> = {};
      for (const via of ['baseUrls', 'set'] as const) {
        // 100 ms: every hedge (5 ms, 10 ms) is sent before its attempt's 503 arrives, on a loaded
        // machine too (at 30 ms, a late event loop let some 503s in first: 15 tries against 14).
        const list = [await server(downAfter(100)), await server(downAfter(100)), await server(downAfter(100))];
        const urls = list.map((s) => s.url);
        const options: ResilientFetchOptions = {
          retry: { maxAttempts, ...quick },
          hedge: { delay: 5, maxHedges: 2, budget: false },
          idempotencyKey: 'auto',
          budget: false,
          breaker: false,
        };
        const http = client(
          via === 'baseUrls'
            ? { ...options, baseUrls: urls }
            : {
                ...options,
                failover: userSet(urls, { ejection: false, retry: { maxAttempts: 10, idempotent: true } }),
              },
        );
        const calls = Array.from({ length: 5 }, () => http('/charges', { method: 'POST', body: '{"amount":42}' }));
        for (const res of await Promise.all(calls)) expect(res.status).toBe(503);
        await new Promise((r) => setTimeout(r, 150)); // hedges aborted late still land
        counts[via] = sum(list);
        const keys = new Set(list.flatMap((s) => s.seen.map((r) => r.headers['idempotency-key'])));
        expect(keys.size).toBe(5); // one key per call, on every try of it
      }
      expect({ maxAttempts, set: counts.set }).toEqual({ maxAttempts, set: counts.baseUrls });
      // As documented: maxAttempts counts every try of a call, its hedges' retries included; a hedge itself is on top.
      expect(counts.set, `maxAttempts ${maxAttempts}`).toBeLessThanOrEqual(5 * (maxAttempts + 2));
    }
  });

  it('active-passive with every endpoint ejected (panic): each GET still tries at most maxAttempts times', async () => {
    const list = [await server(down), await server(down), await server(down)];
    const set = userSet(
      list.map((s) => s.url),
      {
        mode: 'active-passive',
        ejection: { consecutiveFailures: 1, maxShare: 1 },
        retry: { maxAttempts: 10, idempotent: true },
      },
    );
    const http = client({ failover: set, retry: { maxAttempts: 2, ...quick }, budget: false, breaker: false });
    for (let i = 0; i < 20; i++) expect((await http('/x')).status).toBe(503);
    expect(sum(list)).toBeLessThanOrEqual(40);
    expect(sum(list)).toBeGreaterThanOrEqual(20);
  });

  it("a caller's abort stops the call at once: no try is sent after it", async () => {
    const hitAt: number[] = [];
    const timed: Handler = (_, res) => {
      hitAt.push(performance.now());
      slowDown(_, res, 0);
    };
    const list = [await server(timed), await server(timed)];
    const set = userSet(
      list.map((s) => s.url),
      { ejection: false, retry: { maxAttempts: 10, idempotent: true } },
    );
    const http = client({ failover: set, retry: { maxAttempts: 5, ...quick }, budget: false, breaker: false });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('caller gave up')), 45);
    const error = await http('/x', { signal: controller.signal }).catch((e: unknown) => e);
    const abortedAt = performance.now();
    expect((error as Error).message).toBe('caller gave up');
    await new Promise((r) => setTimeout(r, 150));
    expect(hitAt.filter((t) => t > abortedAt + 5)).toEqual([]);
    expect(sum(list)).toBeLessThanOrEqual(2);
  });
});

describe("a call's own retry with odd values", () => {
  it('is a HoldfastConfigError naming the option, before any endpoint is asked', async () => {
    const list = [await server(down)];
    const set = userSet(list.map((s) => s.url));
    const throwing = Object.defineProperty({}, 'deposit', {
      get() {
        throw new Error('budget getter bug');
      },
    });
    const cases: [unknown, string][] = [
      [{ maxAttempts: 0, retryOn: () => true, budget: false }, 'retry.maxAttempts'],
      [{ maxAttempts: Number.NaN, retryOn: () => true, budget: false }, 'retry.maxAttempts'],
      [{ maxAttempts: Number.POSITIVE_INFINITY, retryOn: () => true, budget: false }, 'retry.maxAttempts'],
      [{ maxAttempts: 1.5, retryOn: () => true, budget: false }, 'retry.maxAttempts'],
      [{ maxAttempts: '2', retryOn: () => true, budget: false }, 'retry.maxAttempts'],
      [{ maxAttempts: 2, retryOn: true, budget: false }, 'retry.retryOn'],
      [{ maxAttempts: 2, retryOn: () => true }, 'retry.budget'],
      [{ maxAttempts: 2, retryOn: () => true, budget: null }, 'retry.budget'],
      [{ maxAttempts: 2, retryOn: () => true, budget: throwing }, 'retry could not be read: a getter threw'],
      [null, 'retry.maxAttempts'],
      [true, 'retry.maxAttempts'],
      [
        Object.defineProperty({}, 'retryOn', {
          get() {
            throw new Error('retry getter bug');
          },
        }),
        'retry',
      ],
    ];
    for (const [retry, path] of cases) {
      const error = await set.execute((e) => fetch(e.target), { retry: retry as never }).catch((e: unknown) => e);
      expect(error, JSON.stringify(retry)).toBeInstanceOf(HoldfastConfigError);
      expect((error as Error).message, String(retry)).toContain(path);
    }
    expect(sum(list)).toBe(0);
  });
});

describe('a path joined to a base URL, property, against real servers', () => {
  it("reaches no host but the base URL's, and fails only with a clear error", async () => {
    const api = await server((req, res) => res.end(`api ${req.path}`));
    const evil = await server((req, res) => res.end(`evil ${req.path}`));
    const evilHost = `127.0.0.1:${evil.port}`;
    const piece = fc.constantFrom(
      '/',
      '//',
      '\\',
      '/\\',
      '\t',
      '\n',
      ' ',
      '\0',
      '..',
      '.',
      '%2e%2e',
      '%2f',
      '%5c',
      '%00',
      '@',
      '?',
      '#',
      ':',
      'é',
      '／',
      '\u3002',
      'x',
      evilHost,
      `localhost:${evil.port}`,
      'http:',
      'https:',
      'HTTP:',
      'javascript:',
      'data:',
      'file:',
      'user:42',
    );
    const path = fc.oneof(
      fc.array(piece, { maxLength: 8 }).map((parts) => parts.join('')),
      fc
        .array(fc.oneof(piece, fc.string({ unit: 'binary', maxLength: 3 })), { maxLength: 6 })
        .map((parts) => parts.join('')),
    );
    const http = client({ baseUrls: [`${api.url}/v1`], retry: false, breaker: false });
    const clear =
      /^(fetch: a path that names a host|fetch: an absolute URL .* is not under the base URLs|Invalid URL: |fetch failed: )/;
    await fc.assert(
      fc.asyncProperty(path, async (p) => {
        const before = evil.seen.length;
        let body: string | undefined;
        try {
          body = await (await http(p)).text();
        } catch (error) {
          expect(error, p).toBeInstanceOf(TypeError);
          expect((error as Error).message, JSON.stringify(p)).toMatch(clear);
        }
        expect(evil.seen.length, `${JSON.stringify(p)} reached ${evilHost}`).toBe(before);
        if (body !== undefined) {
          // Dot segments may leave the base path (as in any URL), never its host.
          expect(body.startsWith('api /'), `${JSON.stringify(p)} answered ${body}`).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  }, 60_000); // 500 real requests: 3.5-5 s at load 15, past vitest's 5 s default
});

describe('the retry budget is paid into once a call, however many runs of the set it takes', () => {
  for (const endpoints of [1, 3]) {
    it(`a 100%-down outage over ${endpoints} endpoint(s): tries stay within 1 + ratio a call, as over baseUrls`, async () => {
      const calls = 100;
      const tries: Record<string, number> = {};
      for (const via of ['baseUrls', 'set'] as const) {
        const list = await Promise.all(Array.from({ length: endpoints }, () => server(down)));
        const urls = list.map((s) => s.url);
        const budget = retryBudget({ ratio: 0.2, minPerSecond: 0, ttl: 60_000 });
        made.push(budget);
        const options: ResilientFetchOptions = { retry: { maxAttempts: 4, ...quick }, budget, breaker: false };
        const set = userSet(urls, { ejection: false, retry: { maxAttempts: 10, idempotent: true } });
        const http = client(via === 'baseUrls' ? { ...options, baseUrls: urls } : { ...options, failover: set });
        for (let i = 0; i < calls; i++) expect((await http('/x')).status).toBe(503);
        tries[via] = sum(list);
        expect((budget.snapshot() as { calls: number }).calls, via).toBe(calls);
      }
      expect(tries.set).toBe(tries.baseUrls);
      expect(tries.set).toBeLessThanOrEqual(calls * 1.2 + 1);
    });
  }
});

describe("a call's own budget disposed while the call runs", () => {
  it("ends the call with its last failure, as retry() does, never with the budget's DisposedError", async () => {
    const list = [await server(down), await server(down)];
    const set = userSet(
      list.map((s) => s.url),
      { ejection: false },
    );
    const budget = retryBudget({ ratio: 1, minPerSecond: 10 });
    made.push(budget);
    const error = await set
      .execute(
        async (e) => {
          const res = await fetch(`${e.target}/x`);
          budget.dispose(); // another part of the service shuts down the shared budget
          throw new Error(`failed: ${res.status}`);
        },
        { retry: { maxAttempts: 2, retryOn: () => true, budget } },
      )
      .catch((e: unknown) => e);
    expect((error as Error).message).toBe('failed: 503');
    expect(sum(list)).toBe(1);
  });
});

/**
 * A failover set of the user's own (`failover` option) against real local HTTP servers: each try
 * counted where it lands, compared with the same call over `baseUrls`. resilientFetch's `retry`
 * decides for every call it makes, whatever the set's own retry options say: `maxAttempts`
 * counts every try, an unsafe request is never repeated, and the budget is drawn from and paid
 * into as with base URLs.
 */
import { createBus } from '@holdfast/core';
import { type Failover, failover } from '@holdfast/failover';
import { retryBudget } from '@holdfast/retry';
import { afterEach, describe, expect, it } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';
import { type Upstream, upstream } from './upstream.js';

const made: { dispose(): void }[] = [];
const servers: Upstream[] = [];

afterEach(async () => {
  for (const thing of made.splice(0)) thing.dispose();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function client(options: ResilientFetchOptions): ResilientFetch {
  const http = resilientFetch({ bus: createBus(), breaker: false, ...options });
  made.push(http);
  return http;
}

async function failing(n: number, status = 503): Promise<Upstream[]> {
  const list = await Promise.all(
    Array.from({ length: n }, () =>
      upstream((_, res) => {
        res.statusCode = status;
        res.end('down');
      }),
    ),
  );
  servers.push(...list);
  return list;
}

function userSet(urls: string[], retry: Parameters<typeof failover<string>>[0]['retry']): Failover<string> {
  const set = failover<string>({ endpoints: urls, bus: createBus(), retry, ejection: false });
  made.push(set);
  return set;
}

const hits = (list: Upstream[]) => list.map((s) => s.seen.length);
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const quick = { backoff: { type: 'constant' as const, initialDelay: 1 } };
/** Tests of many calls over HTTP, bounded by their counts (never by time): room for load 20 on two cores. */
const loaded = { timeout: 60_000 };

// Four rounds of calls against fresh servers per test; a backoff of 60 s that must not be waited for.
describe("a user's failover set: maxAttempts counts every try", loaded, () => {
  for (const [label, setRetry] of [
    ['the set retrying up to 10 tries on its own', { maxAttempts: 10, idempotent: true }],
    ['the set with its defaults (2 tries, refused connections only)', undefined],
    ['the set with retry off', false],
  ] as const) {
    it(`a GET failing everywhere is tried maxAttempts times in all, as over baseUrls (${label})`, async () => {
      for (const maxAttempts of [1, 2, 3, 5]) {
        const viaBase = await failing(2);
        await client({ baseUrls: viaBase.map((s) => s.url), retry: { maxAttempts, ...quick }, budget: false })('/x');
        const viaSet = await failing(2);
        const http = client({
          failover: userSet(
            viaSet.map((s) => s.url),
            setRetry,
          ),
          retry: { maxAttempts, ...quick },
          budget: false,
        });
        const res = await http('/x');
        expect(res.status).toBe(503);
        expect({ maxAttempts, tries: sum(hits(viaSet)) }).toEqual({ maxAttempts, tries: sum(hits(viaBase)) });
        expect(sum(hits(viaSet))).toBe(maxAttempts);
      }
    });
  }

  it('a POST without a key that failed on one endpoint is never sent to another, whatever the set says', async () => {
    const list = await failing(3);
    const http = client({
      failover: userSet(
        list.map((s) => s.url),
        { maxAttempts: 3, idempotent: true },
      ),
      retry: quick,
      budget: false,
    });
    const res = await http('/charges', { method: 'POST', body: '{"amount":42}' });
    expect(res.status).toBe(503);
    expect(sum(hits(list))).toBe(1);
  });

  it('a failed try moves at once to another endpoint, as over baseUrls', async () => {
    const [down] = await failing(1);
    const up = await upstream();
    servers.push(up);
    const set = userSet([(down as Upstream).url, up.url], { maxAttempts: 1 });
    // A backoff of 60 s between runs of the set: a try moved at once does not wait for it (one that
    // did would time the test out), and a loaded machine is far from it.
    const slow = { type: 'constant' as const, initialDelay: 60_000, maxDelay: 60_000 };
    const http = client({ failover: set, retry: { maxAttempts: 2, backoff: slow, jitter: 'none' }, budget: false });
    const started = performance.now();
    for (let i = 0; i < 4; i++) expect((await http('/x')).status).toBe(200);
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(hits([down as Upstream, up])).toEqual([2, 4]);
  });
});

// 400 calls, and up to 300 tries, over HTTP one after another.
describe("a user's failover set: the retry budget", loaded, () => {
  it('is paid into by every call, so a service under steady traffic keeps its retries, as over baseUrls', async () => {
    // One try in ten fails: 20% of calls may be retried, far more than the one in ten needed.
    const calls = 200;
    const run = async (options: Pick<ResilientFetchOptions, 'baseUrls' | 'failover'>, list: Upstream[]) => {
      let n = 0;
      for (const s of list) {
        s.handle((_, res) => {
          if (n++ % 10 === 0) res.statusCode = 503;
          res.end();
        });
      }
      const budget = retryBudget({ ratio: 0.2, minPerSecond: 0, ttl: 60_000 });
      made.push(budget);
      const http = client({ ...options, retry: { maxAttempts: 2, ...quick }, budget });
      let failed = 0;
      for (let i = 0; i < calls; i++) if ((await http('/x')).status !== 200) failed++;
      return failed;
    };
    const viaBase = await failing(2);
    const viaSet = await failing(2);
    const failedBase = await run({ baseUrls: viaBase.map((s) => s.url) }, viaBase);
    const failedSet = await run(
      {
        failover: userSet(
          viaSet.map((s) => s.url),
          undefined,
        ),
      },
      viaSet,
    );
    // The first call finds the budget empty (no floor here): it alone may fail, over either.
    expect(failedBase).toBeLessThanOrEqual(1);
    expect({ failedBase, failedSet }).toEqual({ failedBase, failedSet: failedBase });
  });

  it('stops a storm: with every endpoint down, retries stay within the budget, as over baseUrls', async () => {
    const calls = 100;
    const run = async (options: Pick<ResilientFetchOptions, 'baseUrls' | 'failover'>, list: Upstream[]) => {
      const budget = retryBudget({ ratio: 0.2, minPerSecond: 0, ttl: 60_000 });
      made.push(budget);
      const http = client({ ...options, retry: { maxAttempts: 3, ...quick }, budget });
      for (let i = 0; i < calls; i++) await http('/x');
      return sum(hits(list));
    };
    const viaBase = await failing(2);
    const viaSet = await failing(2);
    const base = await run({ baseUrls: viaBase.map((s) => s.url) }, viaBase);
    const own = await run(
      {
        failover: userSet(
          viaSet.map((s) => s.url),
          { maxAttempts: 10, idempotent: true },
        ),
      },
      viaSet,
    );
    expect(base).toBeLessThanOrEqual(calls * 1.2 + 2);
    expect(own).toBeLessThanOrEqual(calls * 1.2 + 2);
  });
});

describe("a user's failover set: what says nothing of an endpoint is not held against it", () => {
  const ejections = (set: Failover<string>) => set.snapshot().endpoints.map((e) => `${e.ejection} ${e.ejections}`);

  it("a caller's mistake (a GET with a body, which fetch refuses) ejects no endpoint, as over baseUrls", async () => {
    const list = await failing(2, 200);
    const set = failover<string>({ endpoints: list.map((s) => s.url), bus: createBus() }); // ejection on
    made.push(set);
    const http = client({ failover: set, retry: quick });
    for (let i = 0; i < 12; i++) {
      await expect(http('/x', { method: 'GET', body: 'oops' })).rejects.toThrow(TypeError);
    }
    expect(ejections(set)).toEqual(['none 0', 'none 0']);
    expect(sum(hits(list))).toBe(0);
  });
});

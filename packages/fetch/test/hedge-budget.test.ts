import type { ServerResponse } from 'node:http';
import { createBus } from '@holdfast/core';
import { retryBudget } from '@holdfast/retry';
import { afterEach, describe, expect, it } from 'vitest';
import { type ResilientFetch, resilientFetch } from '../src/index.js';
import { type Upstream, upstream } from './upstream.js';

/**
 * The retry budget counts calls and the retries drawn against them ("20% of calls"; "every call
 * pays into resilientFetch's budget", once a call). A hedge is paid for by the hedge budget: it
 * is no call of its own, so it must not count as one in the retry budget (which would let a
 * hedging client retry twice as much as it says), nor take a retry from it.
 */
const servers: Upstream[] = [];
const clients: ResilientFetch[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.dispose();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** Each call's first request (by `?call=`) is held until the client gives it up; its others answer. */
function firstHangs() {
  const arrivals = new Map<string, number>();
  return (req: { path: string }, res: ServerResponse) => {
    const id = new URL(req.path, 'http://x').searchParams.get('call') ?? '';
    const n = (arrivals.get(id) ?? 0) + 1;
    arrivals.set(id, n);
    if (n > 1) res.end(`call ${id}`);
  };
}

describe('hedges and the retry budget', () => {
  it('without base URLs: a hedged call counts once in the retry budget and takes no retry', async () => {
    const server = await upstream(firstHangs());
    servers.push(server);
    // A window longer than the test: the default 1 s let a loaded machine's calls leave it before the count.
    const budget = retryBudget({ name: 'b', ratio: 0.2, minPerSecond: 0, ttl: 60_000, policies: false });
    const http = resilientFetch({ hedge: { delay: 20, budget: false }, budget, bus: createBus() });
    clients.push(http);
    for (let i = 0; i < 4; i++) expect(await (await http(`${server.url}/x?call=${i}`)).text()).toBe(`call ${i}`);
    expect((http.snapshot() as { hedge: { hedges: number } }).hedge.hedges).toBe(4);
    expect(budget.snapshot(), 'calls counted by the retry budget').toMatchObject({ calls: 4, retries: 0 });
    budget.dispose();
  });

  it('with base URLs: a hedged call counts once in the retry budget and takes no retry', async () => {
    const hang = firstHangs(); // one count for both hosts: a hedge goes to the other
    const a = await upstream(hang);
    const b = await upstream(hang);
    servers.push(a, b);
    // A window longer than the test: the default 1 s let a loaded machine's calls leave it before the count.
    const budget = retryBudget({ name: 'b', ratio: 0.2, minPerSecond: 0, ttl: 60_000, policies: false });
    const http = resilientFetch({
      baseUrls: [a.url, b.url],
      hedge: { delay: 20, budget: false },
      budget,
      bus: createBus(),
    });
    clients.push(http);
    for (let i = 0; i < 4; i++) expect(await (await http(`/x?call=${i}`)).text()).toBe(`call ${i}`);
    expect((http.snapshot() as { hedge: { hedges: number } }).hedge.hedges).toBe(4);
    expect(a.seen.length + b.seen.length).toBe(8);
    expect(budget.snapshot(), 'calls counted by the retry budget').toMatchObject({ calls: 4, retries: 0 });
    budget.dispose();
  });
});

describe('a storm: every answer a slow 503, hedges and retries together', () => {
  for (const baseUrls of [false, true]) {
    it(`${baseUrls ? 'with' : 'without'} base URLs: requests stay within calls + hedge budget + retry budget`, async () => {
      const slow503 = (_: unknown, res: ServerResponse) => {
        setTimeout(() => {
          res.statusCode = 503;
          res.end('down');
        }, 15);
      };
      const a = await upstream(slow503);
      const b = await upstream(slow503);
      servers.push(a, b);
      const budget = retryBudget({ name: 'b', ratio: 0.2, minPerSecond: 0, ttl: 60_000, policies: false });
      const http = resilientFetch({
        ...(baseUrls ? { baseUrls: [a.url, b.url] } : {}),
        hedge: { delay: 1, maxHedges: 3, budget: { ratio: 0.5, minPerSecond: 0, window: 60_000 } },
        retry: { maxAttempts: 6, backoff: { initialDelay: 1, maxDelay: 2 } },
        breaker: false,
        budget,
        bus: createBus(),
      });
      clients.push(http);
      const calls = 40;
      const statuses = await Promise.all(
        Array.from({ length: calls }, (_, i) =>
          http(baseUrls ? `/x?call=${i}` : `${a.url}/x?call=${i}`).then(
            (res) => res.status,
            (e: Error & { code?: string }) => e.code ?? e.message,
          ),
        ),
      );
      const hedges = (http.snapshot() as { hedge: { hedges: number } }).hedge.hedges;
      const spent = budget.snapshot() as { calls: number; retries: number };
      const requests = a.seen.length + b.seen.length;
      const summary = JSON.stringify({ requests, hedges, spent, statuses: [...new Set(statuses)] });
      expect(spent.calls, summary).toBe(calls);
      expect(hedges, summary).toBeLessThanOrEqual(calls * 0.5 + 1);
      expect(spent.retries, summary).toBeLessThanOrEqual(calls * 0.2 + 1);
      expect(requests, summary).toBeLessThanOrEqual(calls + hedges + spent.retries);
      budget.dispose();
    });
  }
});

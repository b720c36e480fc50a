/**
 * maxAttempts counts every try of a call: a key still running on the server (409 + Retry-After)
 * is waited for, but never past maxAttempts tries; a hedge brings no maxAttempts of its own; a
 * run of the set that sent nothing is not run again. An empty path asks for the base URL itself.
 */
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { afterEach, describe, expect, it } from 'vitest';
import { type ResilientFetch, type ResilientFetchOptions, resilientFetch } from '../src/index.js';
import { upstream } from './upstream.js';

const made: { dispose(): void }[] = [];

afterEach(() => {
  for (const http of made.splice(0)) http.dispose();
});

function client(options: ResilientFetchOptions): ResilientFetch {
  const http = resilientFetch({ bus: createBus(), breaker: false, budget: false, ...options });
  made.push(http);
  return http;
}

describe('a keyed call whose key is still running on the server, with base URLs', () => {
  it('is waited for as Retry-After says, but sends no more than maxAttempts tries in all', async () => {
    const sent: string[] = [];
    const http = client({
      baseUrls: ['http://a.test', 'http://b.test'],
      retry: { maxAttempts: 3, backoff: { type: 'constant', initialDelay: 1 } },
      fetch: async (input) => {
        sent.push(String(input));
        // The first try fails (its key left running there); every later one finds the key running.
        if (sent.length === 1) return new Response(null, { status: 503 });
        return new Response(null, { status: 409, headers: { 'retry-after': '0' } });
      },
    });
    const res = await http('/orders', { method: 'POST', headers: { 'Idempotency-Key': 'k1' }, body: '{}' });
    expect(res.status).toBe(409);
    expect(sent.length).toBe(3);
  });
});

describe('a hedged call without base URLs', () => {
  it('sends no more than maxAttempts tries plus its hedges: each hedge does not bring maxAttempts of its own', async () => {
    const sent: string[] = [];
    let hedged: () => void = () => {};
    const second = new Promise<void>((resolve) => {
      hedged = resolve;
    });
    const http = client({
      hedge: { delay: 1, maxHedges: 1, budget: false },
      retry: { maxAttempts: 3, backoff: { type: 'constant', initialDelay: 1 } },
      fetch: async (input) => {
        sent.push(String(input));
        if (sent.length === 2) hedged();
        // The first try answers once its hedge has gone out; both fail, as every later try does.
        if (sent.length === 1) await second;
        return new Response(null, { status: 503 });
      },
    });
    const res = await http('http://a.test/x');
    expect(res.status).toBe(503);
    expect(sent.length).toBe(3 + 1);
  });
});

describe('a set that can take no call', () => {
  it('refuses it once: nothing was sent, so nothing is retried, and the set says why', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const set = failover<string>({ endpoints: ['http://a.test'], bus, policies: false });
    made.push(set);
    await set.drain('http://a.test');
    let sent = 0;
    const http = client({
      bus,
      failover: set,
      retry: { backoff: { type: 'constant', initialDelay: 1 } },
      fetch: async () => {
        sent++;
        return new Response('ok');
      },
    });
    await expect(http('/x')).rejects.toMatchObject({ code: 'E_NO_HEALTHY_ENDPOINT' });
    expect(events.filter((e) => e.type === 'retry.attempt' && e.source === 'fetch.retry')).toEqual([]);
    expect(sent).toBe(0);
  });
});

describe('an empty path', () => {
  it('asks for the base URL itself, its path unchanged', async () => {
    const sent: string[] = [];
    const http = client({
      baseUrls: ['http://a.test/graphql'],
      fetch: async (input) => {
        sent.push(String(input));
        return new Response('ok');
      },
    });
    await http('');
    await http('?q=1');
    expect(sent).toEqual(['http://a.test/graphql', 'http://a.test/graphql/?q=1']);
  });
});

describe('a 407 answering a stream body, with no stack to tell it by', () => {
  it('is not called a redirect: the message names the 407 it may be', async () => {
    const proxy = await upstream((_, res) => {
      res.writeHead(407, { 'proxy-authenticate': 'Basic' });
      res.end();
    });
    made.push({ dispose: () => void proxy.close() });
    const http = client({ retry: false });
    const limit = Error.stackTraceLimit;
    // Set by services that skip stack traces for speed: undici's errors then name no function.
    Error.stackTraceLimit = 0;
    try {
      const body = new ReadableStream({
        start(c) {
          c.enqueue(new TextEncoder().encode('x'));
          c.close();
        },
      });
      const failed = await http(`${proxy.url}/up`, { method: 'POST', body, duplex: 'half' } as RequestInit).catch(
        (e: Error) => e,
      );
      expect(String((failed as Error).message)).toMatch(/407/);
    } finally {
      Error.stackTraceLimit = limit;
    }
  });
});

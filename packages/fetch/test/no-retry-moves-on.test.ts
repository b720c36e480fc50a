/**
 * `retry: false` over base URLs sends a request at most once. A try that sent nothing (the host's
 * breaker is open, its limiter is full, its connection was refused) is not a send: the call moves
 * on to another base URL, each one at most once, as the README says ("with `baseUrls` calls go to
 * the others meanwhile"). Before, such a call failed with E_CIRCUIT_OPEN while another host was up.
 */
import { type BreakerRegistry, breakerRegistry } from '@holdfast/breaker';
import { BrokenCircuitError, createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import type { ResilientFetch } from '../src/index.js';
import { closedPort, perTest, reply } from './upstream.js';

const { server, client } = perTest({ retry: false });

/** Per-host breakers that open after `failures` failures in a row. */
function breakers(failures: number): BreakerRegistry {
  return breakerRegistry({ defaults: { consecutiveFailures: failures }, bus: createBus() });
}

/** What each call ended with: a status, or an error's code. */
async function outcomes(http: ResilientFetch, calls: number, init?: RequestInit): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < calls; i++) {
    try {
      const res = await http('/x', init);
      await res.text();
      out.push(String(res.status));
    } catch (error) {
      out.push(String((error as { code?: unknown }).code ?? error));
    }
  }
  return out;
}

describe('retry: false over base URLs', () => {
  it("a host whose breaker is open is passed over: every call gets the other's 200, and the open host is sent nothing", async () => {
    const sick = await server(reply(500));
    const well = await server(reply(200));
    const breaker = breakers(2);
    const http = client({ baseUrls: [sick.url, well.url], breaker });
    const out = await outcomes(http, 20);
    // The two 500s that open the breaker are answers (retry: false returns them); nothing else fails.
    expect(out.filter((o) => o !== '200')).toEqual(['500', '500']);
    expect(sick.seen.length).toBe(2);
    expect(well.seen.length).toBe(18);
    const sickBreaker = Object.values(breaker.snapshot().breakers).find((b) => b.state === 'open');
    expect(sickBreaker?.window.rejects).toBeGreaterThan(0);
    breaker.dispose();
  });

  it('a 503 is still an answer: returned as it is, never sent to another host', async () => {
    const busy = await server(reply(503));
    const well = await server(reply(200));
    const http = client({ baseUrls: [busy.url, well.url], breaker: false });
    const out = await outcomes(http, 4);
    expect(out).toEqual(['503', '200', '503', '200']);
    expect([busy.seen.length, well.seen.length]).toEqual([2, 2]);
  });

  it('a refused connection sent nothing: a POST without a key moves on, and is received once', async () => {
    const down = await closedPort();
    const well = await server(reply(201));
    const http = client({ baseUrls: [down, well.url], breaker: false });
    const out = await outcomes(http, 4, { method: 'POST', body: 'order' });
    expect(out).toEqual(['201', '201', '201', '201']);
    expect(well.seen.map((s) => s.body)).toEqual(['order', 'order', 'order', 'order']);
  });

  it('every breaker open: the call fails with E_CIRCUIT_OPEN after one look at each host, sending nothing', async () => {
    const a = await server(reply(500));
    const b = await server(reply(500));
    const breaker = breakers(1);
    const http = client({ baseUrls: [a.url, b.url], breaker });
    expect(await outcomes(http, 2)).toEqual(['500', '500']);
    const before = a.seen.length + b.seen.length;
    const error = await http('/x').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BrokenCircuitError);
    expect(a.seen.length + b.seen.length).toBe(before);
    // One refusal per host for this call: it looked at each once, and did not go round again.
    const rejects = Object.values(breaker.snapshot().breakers).map((s) => s.window.rejects);
    expect(rejects).toEqual([1, 1]);
    breaker.dispose();
  });
});

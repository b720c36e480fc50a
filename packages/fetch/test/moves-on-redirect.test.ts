/**
 * A refused connection proves nothing was sent only when it was the connection to the URL we
 * sent to. fetch follows redirects itself: a POST that reached its server, which answered
 * 303 See Other (the order is made; here is where to read it) to a host that then refused the
 * connection, fails with the same `ECONNREFUSED` as a POST that went nowhere. Moved on, the
 * order was made twice.
 */
import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { describe, expect, it } from 'vitest';
import { closedPort, perTest, reply } from './upstream.js';

const { server, client } = perTest({ breaker: false });

describe('a POST redirected to a host that refuses', () => {
  for (const retry of [false, undefined] as const) {
    it(`is sent once (retry: ${String(retry)}): the refusal was the redirect's, not the POST's`, async () => {
      const down = await closedPort();
      const made = await server((_, res) => {
        res.writeHead(303, { location: `${down}/orders/42` });
        res.end();
      });
      const other = await server(reply(201));
      // Active-passive: the POST goes to \`made\` first.
      const set = failover<string>({
        endpoints: [made.url, other.url],
        mode: 'active-passive',
        bus: createBus(),
        retry: false,
      });
      const http = client({ failover: set, ...(retry === false ? { retry } : {}) });
      const error = await http('/orders', { method: 'POST', body: 'order' }).catch((e: unknown) => e);
      // Every POST any server received: the order, once.
      expect([...made.seen, ...other.seen].filter((s) => s.method === 'POST').length).toBe(1);
      expect(error).toBeInstanceOf(TypeError);
      set.dispose();
    });
  }

  it('a POST whose own connection was refused still moves on (retry: false)', async () => {
    const down = await closedPort();
    const well = await server(reply(201));
    const http = client({ baseUrls: [down, well.url], retry: false });
    const res = await http('/orders', { method: 'POST', body: 'order' });
    expect(res.status).toBe(201);
    expect(well.seen.length).toBe(1);
  });

  it('a POST whose connection was reset after it arrived does not move on (retry: false)', async () => {
    const reset = await server((_, res) => res.socket?.destroy());
    const well = await server(reply(201));
    const http = client({ baseUrls: [reset.url, well.url], retry: false });
    const error = await http('/orders', { method: 'POST', body: 'order' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TypeError);
    expect([reset.seen.length, well.seen.length]).toEqual([1, 0]);
  });
});

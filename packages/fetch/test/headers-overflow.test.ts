/**
 * A response whose headers are larger than undici takes (16 KiB by default, Node's
 * --max-http-header-size): fetch fails with UND_ERR_HEADERS_OVERFLOW. The host answered, and
 * answers the same request the same way: a retry only sends the request again (a POST with a key
 * included). It is treated as a 500 is: not retried, not moved to another base URL, counted by the
 * host's breaker as a 500 is (headers-overflow-breaker.test.ts), and said plainly.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resilientFetch } from '../src/index.js';

/** A raw HTTP server: `/big` answers with 100 kB of headers, anything else a plain 200. */
interface Raw {
  readonly url: string;
  requests: string[];
  close(): Promise<void>;
}

async function raw(): Promise<Raw> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      for (let end = buffered.indexOf('\r\n\r\n'); end >= 0; end = buffered.indexOf('\r\n\r\n')) {
        const head = buffered.slice(0, end);
        buffered = buffered.slice(end + 4);
        const path = head.split(' ')[1] ?? '';
        requests.push(path);
        const big = path === '/big' ? Array.from({ length: 100 }, (_, i) => `x-h${i}: ${'v'.repeat(1000)}\r\n`) : [];
        socket.write(`HTTP/1.1 200 OK\r\n${big.join('')}content-length: 2\r\n\r\nok`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

let a: Raw;
let b: Raw;
beforeAll(async () => {
  [a, b] = await Promise.all([raw(), raw()]);
});
afterAll(async () => {
  await Promise.all([a.close(), b.close()]);
});

const wasted = ['retry.attempt', 'retry.budgetExhausted', 'failover.eject'];

describe('a response with 100 kB of headers (UND_ERR_HEADERS_OVERFLOW)', () => {
  it('is tried once, said plainly, and counted by the breaker as a 500 is: its other calls go on', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const http = resilientFetch({
      bus,
      retry: { maxAttempts: 3, backoff: { type: 'constant', initialDelay: 1 } },
    });
    try {
      a.requests.length = 0;
      for (let i = 0; i < 5; i++) {
        const error = await http(`${a.url}/big`).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TypeError);
        expect((error as { code?: string }).code).toBe('UND_ERR_HEADERS_OVERFLOW');
        expect((error as Error).message).toBe(
          "fetch failed: Headers Overflow Error: the response's headers are larger than fetch takes (--max-http-header-size, 16 KiB by default)",
        );
      }
      expect(a.requests).toEqual(Array(5).fill('/big'));
      expect(events.map((e) => e.type).filter((t) => wasted.includes(t))).toEqual([]);
      expect(events.filter((e) => e.type === 'breaker.failure')).toHaveLength(5);
      // 5 calls, fewer than the breaker's minimumCalls: it lets the next call through.
      expect(await (await http(`${a.url}/ok`)).text()).toBe('ok');
    } finally {
      http.dispose();
    }
  });

  it('with base URLs: not moved to the other host, which would answer the same', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const http = resilientFetch({ bus, baseUrls: [a.url, b.url] });
    try {
      a.requests.length = 0;
      b.requests.length = 0;
      for (let i = 0; i < 4; i++) {
        const error = await http('/big').catch((e: unknown) => e);
        expect((error as { code?: string }).code).toBe('UND_ERR_HEADERS_OVERFLOW');
      }
      expect(a.requests.length + b.requests.length).toBe(4);
      expect(events.map((e) => e.type).filter((t) => wasted.includes(t))).toEqual([]);
    } finally {
      http.dispose();
    }
  });
});

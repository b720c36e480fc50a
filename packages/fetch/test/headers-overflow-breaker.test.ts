/**
 * A host that answers with headers larger than fetch takes (UND_ERR_HEADERS_OVERFLOW) answered,
 * but with nothing a caller can use: as a host answering 500 does. Both are treated alike: not
 * retried, not moved to another base URL on that call, and held against the host's breaker, so a
 * host that answers every call so is cut off while its breaker is open (with base URLs, calls go
 * to the others), as one answering 500 is. Neither is ejected by failover's own count.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ResilientFetchOptions, resilientFetch } from '../src/index.js';

/** A raw HTTP server answering every request with `head` (a status line and headers), then `ok`. */
interface Raw {
  readonly url: string;
  readonly requests: string[];
  close(): Promise<void>;
}

async function raw(head: string): Promise<Raw> {
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
        requests.push(buffered.slice(0, end).split(' ')[1] ?? '');
        buffered = buffered.slice(end + 4);
        socket.write(`${head}content-length: 2\r\n\r\nok`);
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

const bigHeaders = Array.from({ length: 100 }, (_, i) => `x-h${i}: ${'v'.repeat(1000)}\r\n`).join('');
let overflowing: Raw;
let failing: Raw;
let fine: Raw;
beforeAll(async () => {
  [overflowing, failing, fine] = await Promise.all([
    raw(`HTTP/1.1 200 OK\r\n${bigHeaders}`),
    raw('HTTP/1.1 500 Internal Server Error\r\n'),
    raw('HTTP/1.1 200 OK\r\n'),
  ]);
});
afterAll(async () => {
  await Promise.all([overflowing, failing, fine].map((s) => s.close()));
});

/** Runs `calls` calls over [`bad`, fine] and says where they went and what they got. */
async function over(bad: Raw, calls: number, options: Partial<ResilientFetchOptions> = {}) {
  const bus = createBus();
  const events: HoldfastEvent[] = [];
  bus.on('*', (e) => events.push(e));
  bad.requests.length = 0;
  fine.requests.length = 0;
  const http = resilientFetch({
    bus,
    baseUrls: [bad.url, fine.url],
    breaker: { defaults: { consecutiveFailures: 2, openFor: 60_000 } },
    ...options,
  });
  const outcomes: string[] = [];
  try {
    for (let i = 0; i < calls; i++) {
      outcomes.push(
        await http('/x').then(
          (res) => `${res.status}`,
          (e: Error & { code?: string }) => e.code ?? e.message,
        ),
      );
    }
  } finally {
    http.dispose();
  }
  const types = events.map((e) => e.type);
  return {
    badRequests: bad.requests.length,
    fineRequests: fine.requests.length,
    outcomes,
    retried: types.filter((t) => t === 'retry.attempt').length,
    breakerOpened: types.includes('breaker.open'),
    ejected: types.includes('failover.eject'),
  };
}

describe('a base URL whose every answer overflows fetch, beside one whose every answer is a 500', () => {
  it('both are held against their breaker: once it opens, calls go to the other base URL', async () => {
    const fives = await over(failing, 10);
    const overflow = await over(overflowing, 10);
    // The 500s, as the code does: two answers, the breaker opens, the rest go to the fine host.
    expect(fives.badRequests).toBe(2);
    expect(fives.breakerOpened).toBe(true);
    expect(fives.ejected).toBe(false);
    expect(
      { badRequests: overflow.badRequests, breakerOpened: overflow.breakerOpened, ejected: overflow.ejected },
      'the host whose headers overflow, as the one answering 500',
    ).toEqual({ badRequests: fives.badRequests, breakerOpened: true, ejected: false });
    // Each call it answered failed there, tried once: not moved to the other host on that call.
    expect(overflow.outcomes.filter((o) => o === 'UND_ERR_HEADERS_OVERFLOW')).toHaveLength(2);
    expect(fives.outcomes.filter((o) => o === '500')).toHaveLength(2);
    expect(overflow.fineRequests).toBe(8);
    expect(overflow.outcomes.filter((o) => o === '200')).toHaveLength(8);
  });
});

describe('counted once a call, whatever runs around it', () => {
  const setups: Record<string, Partial<ResilientFetchOptions>> = {
    'no retries': { retry: false },
    'five attempts': { retry: { maxAttempts: 5 } },
    'a hedge that waits': { hedge: { delay: 60_000 } },
    'retries, a hedge and 3 in a row to open': {
      retry: { maxAttempts: 5 },
      hedge: { delay: 60_000 },
      breaker: { defaults: { consecutiveFailures: 3, openFor: 60_000 } },
    },
  };
  for (const [name, options] of Object.entries(setups)) {
    it(`${name}: the host whose headers overflow is tried as often as the one answering 500`, async () => {
      const fives = await over(failing, 8, options);
      const overflow = await over(overflowing, 8, options);
      const opensAt = name.includes('3 in a row') ? 3 : 2;
      const seen = (run: typeof fives) => ({
        bad: run.badRequests,
        fine: run.fineRequests,
        opened: run.breakerOpened,
        ejected: run.ejected,
        movedOn: run.retried,
      });
      expect(fives.badRequests, JSON.stringify(fives.outcomes)).toBe(opensAt);
      expect(seen(overflow), JSON.stringify(overflow.outcomes)).toEqual(seen(fives));
      expect(overflow.outcomes.filter((o) => o === 'UND_ERR_HEADERS_OVERFLOW')).toHaveLength(opensAt);
    });
  }
});

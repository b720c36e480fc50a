/**
 * Review: what a faultyFetch response looks like next to a real one, and faults that cannot make a
 * response. A status fault a Response cannot carry (a 205, a header name with a space, a value with
 * a line break) passed the options and then failed every request it picked with undici's
 * constructor message, naming no option; a made-up or reshaped response had no `url`, where code
 * logs the URL that answered or resolves a relative `Location` against it.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HoldfastConfigError } from '@holdfast/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { faultyFetch } from '../src/index.js';

let server: Server;
let base: string;
beforeAll(async () => {
  server = createServer((_req, res) => res.end('hello')).listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe('faultyFetch review: a status fault a response cannot carry', () => {
  it('a 205 (Reset Content) is answered, with no body, as a 204 is', async () => {
    const f = faultyFetch({ enabled: true, faults: [{ type: 'status', status: 205 }] });
    const res = await f(`${base}/form`);
    expect(res.status).toBe(205);
    expect(await res.text()).toBe('');
  });

  it('a body on a 204, 205 or 304 is refused up front, naming the option', () => {
    for (const status of [204, 205, 304]) {
      expect(() => faultyFetch({ enabled: true, faults: [{ type: 'status', status, body: 'x' }] })).toThrow(
        HoldfastConfigError,
      );
      expect(() => faultyFetch({ enabled: true, faults: [{ type: 'status', status, body: 'x' }] })).toThrow(
        /faults\.0\.body/,
      );
    }
  });

  it('a header no response can carry is refused up front, naming it; its value is not shown', () => {
    const bad = (headers: Record<string, string>) => () =>
      faultyFetch({ enabled: true, faults: [{ type: 'status', status: 503, headers }] });
    expect(bad({ 'retry after': '1' })).toThrow(HoldfastConfigError);
    expect(bad({ 'retry after': '1' })).toThrow(/faults\.0\.headers/);
    expect(bad({ 'x-token': 'sk_live_abc\r\nset-cookie: a=b' })).toThrow(/faults\.0\.headers\.x-token/);
    expect(bad({ 'x-token': 'sk_live_abc\r\nset-cookie: a=b' })).not.toThrow(/sk_live_abc/);
  });
});

describe('faultyFetch review: a made-up or reshaped response says which URL answered', () => {
  it('a status fault, a slow body and a body reset keep the request URL as a real response does', async () => {
    const real = await fetch(`${base}/orders/7`);
    await real.text();
    for (const fault of [
      { type: 'status', status: 503 },
      { type: 'slowBody', chunkSize: 2, delay: 1 },
      { type: 'reset', phase: 'body', after: 2 },
    ] as const) {
      const f = faultyFetch({ enabled: true, faults: [fault] });
      const res = await f(`${base}/orders/7`);
      await res.text().catch(() => {});
      expect(res.url, fault.type).toBe(real.url);
      expect(res.redirected, fault.type).toBe(false);
    }
  });
});

import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { chaosSwitch, faultyFetch } from '../src/index.js';

/**
 * A request body goes out once, whole, whichever way faultyFetch lets it through: at once, after a
 * fault decided nothing, or when the kill switch ends a delay or a hang part way. Each of these
 * used to send the caller's original `input`/`init` after faultyFetch had built its own Request
 * from them, which takes the body: a stream body was locked, a Request's body used.
 */

let server: Server;
let url: string;
beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => res.end(Buffer.concat(chunks)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/echo`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));
afterEach(() => chaosSwitch.on());

const payload = 'pay 100 to bob;'.repeat(200);

function streamBody(): ReadableStream<Uint8Array> {
  const bytes = new TextEncoder().encode(payload);
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= bytes.length) return c.close();
      c.enqueue(bytes.subarray(sent, sent + 512));
      sent += 512;
    },
  });
}

type Shape = { name: string; call: (f: typeof fetch) => Promise<Response> };
const shapes: Shape[] = [
  { name: 'a string body', call: (f) => f(url, { method: 'POST', body: payload }) },
  {
    name: 'a stream body',
    call: (f) => f(url, { method: 'POST', body: streamBody(), duplex: 'half' } as RequestInit),
  },
  { name: 'a Request with a body', call: (f) => f(new Request(url, { method: 'POST', body: payload })) },
  {
    name: 'a Request with a stream body',
    call: (f) => f(new Request(url, { method: 'POST', body: streamBody(), duplex: 'half' } as RequestInit)),
  },
];

describe('faultyFetch sends the body once, whole', () => {
  for (const shape of shapes) {
    it(`${shape.name}: through a fault whose match declined it`, async () => {
      const f = faultyFetch({ enabled: true, faults: [{ type: 'status', status: 503, match: () => false }] });
      const res = await shape.call(f);
      expect(await res.text()).toBe(payload);
    });

    it(`${shape.name}: the kill switch ends a hang`, async () => {
      const f = faultyFetch({ enabled: true, faults: [{ type: 'hang' }] });
      const pending = shape.call(f);
      await new Promise((r) => setTimeout(r, 20));
      chaosSwitch.off();
      const res = await pending;
      expect(await res.text()).toBe(payload);
    });

    it(`${shape.name}: the kill switch goes off during a delay, before the next fault`, async () => {
      const f = faultyFetch({
        enabled: true,
        faults: [
          { type: 'delay', delay: 60_000 },
          { type: 'status', status: 503 },
        ],
      });
      const pending = shape.call(f);
      await new Promise((r) => setTimeout(r, 20));
      chaosSwitch.off();
      const res = await pending;
      expect(res.status).toBe(200);
      expect(await res.text()).toBe(payload);
    });
  }
});

import { createServer } from 'node:http';
import { connect } from 'node:net';
import { realClock } from '@holdfast/core';
import express from 'express';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { HttpIdempotency } from '../src/http/engine.js';
import { parseKeyHeader } from '../src/http/key.js';
import { MemoryStore, memoryStore } from '../src/index.js';
import { inProcess } from '../src/memory-store.js';
import { closeAll, expressApp, fastifyApp, listenNode } from './http-support/body-apps.js';
import { newKey, send, spy } from './http-support/support.js';

// The middleware sees a body's bytes without a stream in between: it watches what the socket
// pushes into the request (Fastify's preParsing, Express before the parsers). These tests break
// that: bodies in pieces, bodies already buffered, bodies past the buffer, clients that leave.

afterEach(closeAll);

/**
 * One POST over a raw socket: the head, then each piece of the body after `gap` ms. `headers`
 * are sent as given (repeats stay repeats). Resolves to the status, or 0 if the server closed
 * without answering; `abortAfter` closes the socket after that many pieces.
 */
function post(
  port: number,
  headers: string[],
  pieces: Buffer[],
  options: { gap?: number; abortAfter?: number } = {},
): Promise<{ status: number; body: string }> {
  const hostPort = `127.0.0.1:${port}`;
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      reply += d;
      const end = reply.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = Number(/content-length: (\d+)/i.exec(reply.slice(0, end))?.[1] ?? 0);
      if (reply.length - end - 4 >= length) {
        socket.destroy();
        resolve({ status: Number(reply.slice(9, 12)), body: reply.slice(end + 4, end + 4 + length) });
      }
    });
    socket.on('close', () => resolve({ status: 0, body: '' }));
    socket.on('error', reject);
    const length = pieces.reduce((n, p) => n + p.length, 0);
    const head = ['POST /orders HTTP/1.1', `Host: ${hostPort}`, ...headers, `Content-Length: ${length}`, '', ''];
    socket.write(head.join('\r\n'));
    let i = 0;
    const next = () => {
      if (options.abortAfter !== undefined && i >= options.abortAfter) return socket.destroy();
      if (i >= pieces.length) return;
      socket.write(pieces[i++] as Buffer);
      setTimeout(next, options.gap ?? 0);
    };
    setTimeout(next, options.gap ?? 0);
  });
}

const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const split = (bytes: Buffer, parts: number) =>
  Array.from({ length: parts }, (_, i) =>
    bytes.subarray(Math.floor((i * bytes.length) / parts), Math.floor(((i + 1) * bytes.length) / parts)),
  );

for (const [name, make] of [
  ['Express', expressApp],
  ['Fastify', fastifyApp],
] as const) {
  describe(`${name}: the body's bytes, watched as they arrive`, () => {
    it('a body sent in pieces replays when resent whole, and one changed byte is 422', async () => {
      const app = await make();
      const key = newKey();
      const body = json({ amount: 4200, note: 'x'.repeat(300) });
      const first = await post(
        app.port,
        ['Content-Type: application/json', `Idempotency-Key: ${key}`],
        split(body, 4),
        {
          gap: 15,
        },
      );
      expect(first.status).toBe(201);
      // The handler got the whole body, parsed: nothing was taken from the stream on the way.
      expect(app.bodies[0]).toEqual({ amount: 4200, note: 'x'.repeat(300) });
      const again = await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], [body]);
      expect(again).toEqual(first);
      const changed = Buffer.from(body);
      changed[changed.length - 3] = 0x79; // one 'x' becomes 'y'
      const other = await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], [changed]);
      expect(other.status).toBe(422);
      expect(app.calls()).toBe(1);
    });

    it('a body larger than the stream buffer (read and put back) is fingerprinted and parsed whole', async () => {
      const app = await make();
      const key = newKey();
      const big = json({ blob: 'b'.repeat(100_000) });
      const first = await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], split(big, 7));
      expect(first.status).toBe(201);
      expect((app.bodies[0] as { blob: string }).blob.length).toBe(100_000);
      expect((await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], [big])).body).toBe(
        first.body,
      );
      const changed = Buffer.from(big);
      changed[50_000] = 0x63;
      expect(
        (await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], [changed])).status,
      ).toBe(422);
      expect(app.calls()).toBe(1);
    });

    it('a client that leaves halfway through its body holds no key: its retry runs', async () => {
      const app = await make();
      const key = newKey();
      const body = json({ amount: 1, note: 'z'.repeat(200) });
      const left = await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], split(body, 4), {
        gap: 20,
        abortAfter: 2,
      });
      expect(left.status).toBe(0);
      await new Promise((r) => setTimeout(r, 50));
      const retry = await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], [body]);
      expect(retry.status).toBe(201);
      expect(app.calls()).toBe(1);
    });

    it('refuses a key header sent twice, one copy empty, in either order (400)', async () => {
      const app = await make();
      for (const copies of [
        ['Idempotency-Key: abc', 'Idempotency-Key: '],
        ['Idempotency-Key: ', 'Idempotency-Key: abc'],
        ['Idempotency-Key: "a,b"', 'Idempotency-Key: "a,b"'],
      ]) {
        const res = await post(app.port, ['Content-Type: application/json', ...copies], [json({ a: 1 })]);
        expect(res.status).toBe(400);
      }
      expect(app.calls()).toBe(0);
    });
  });
}

describe('Fastify: a body already buffered when the plugin first sees it', () => {
  it('is teed instead, and still fingerprinted byte for byte', async () => {
    // An async onRequest hook (authentication that awaits a lookup) lets the body arrive and
    // buffer before preParsing: watching pushes from there would miss it.
    const app = await fastifyApp((f) =>
      f.addHook('onRequest', async () => {
        await new Promise((r) => setTimeout(r, 40));
      }),
    );
    const key = newKey();
    const body = json({ amount: 7, note: 'q'.repeat(500) });
    const first = await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], [body]);
    expect(first.status).toBe(201);
    expect(app.bodies[0]).toEqual({ amount: 7, note: 'q'.repeat(500) });
    expect(await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], [body])).toEqual(first);
    const changed = Buffer.from(body);
    changed[20] = 0x72;
    expect(
      (await post(app.port, ['Content-Type: application/json', `Idempotency-Key: ${key}`], [changed])).status,
    ).toBe(422);
    expect(app.calls()).toBe(1);
  });
});

describe('reading the key without building headersDistinct', () => {
  const view = (copies: string[], header: string) => {
    // Node's req.headers: copies joined with ", ", or only the first for the headers it drops.
    const dropsCopies = header === 'from';
    const joined = copies.length === 0 ? undefined : dropsCopies ? copies[0] : copies.join(', ');
    let built = false;
    return {
      headers: { [header]: joined },
      get headersDistinct() {
        built = true;
        return copies.length === 0 ? {} : { [header]: copies };
      },
      built: () => built,
    };
  };

  it('property: decides exactly as the copies themselves would, for any copies of the header', () => {
    const copy = fc.oneof(
      fc.constant(''),
      fc.string({ unit: fc.constantFrom(...'ab1-_.,"\\ '.split('')), maxLength: 8 }),
      fc.string({ unit: fc.constantFrom(...'ab1-_.'.split('')), minLength: 1, maxLength: 8 }).map((s) => `"${s}"`),
    );
    for (const header of ['idempotency-key', 'from']) {
      const core = new HttpIdempotency('test', { store: memoryStore(), scope: 'global', header });
      fc.assert(
        fc.property(fc.array(copy, { minLength: 0, maxLength: 3 }), (copies) => {
          const v = view(copies, header);
          const expected = copies.length === 0 ? parseKeyHeader(undefined) : parseKeyHeader(copies);
          expect(core.key(v).status).toBe(expected.status);
          if (expected.status === 'ok') expect(core.key(v)).toEqual(expected);
        }),
      );
    }
  });

  it('builds headersDistinct only when the joined value has a comma', () => {
    const core = new HttpIdempotency('test', { store: memoryStore(), scope: 'global' });
    const one = view(['k-1'], 'idempotency-key');
    expect(core.key(one)).toEqual({ status: 'ok', key: 'k-1' });
    expect(one.built()).toBe(false);
    const two = view(['k-1', ''], 'idempotency-key');
    expect(core.key(two).status).toBe('invalid');
    expect(two.built()).toBe(true);
  });

  it('builds nothing for a request without the header (every request without a key pays it otherwise)', () => {
    for (const header of ['idempotency-key', 'from']) {
      const core = new HttpIdempotency('test', { store: memoryStore(), scope: 'global', header });
      const none = view([], header);
      expect(core.key(none)).toEqual({ status: 'missing' });
      expect(none.built()).toBe(false);
    }
  });
});

describe('an in-process store, from any copy of the package', () => {
  it('is known by its brand, not by its class: no timer is raced against it', async () => {
    expect(inProcess(memoryStore())).toBeDefined();
    expect(inProcess(new MemoryStore(10, 60_000, { now: () => 0 } as never))).toBeDefined();
    // The CommonJS build gives each entry point its own copy of the class: the brand is shared.
    const another = '../src/memory-store.js?another-copy';
    const copy = (await import(/* @vite-ignore */ another)) as typeof import('../src/memory-store.js');
    expect(copy.MemoryStore).not.toBe(MemoryStore);
    expect(inProcess(copy.memoryStore())).toBeDefined();
    // Wrappers may call out: never taken for the store itself.
    const store = memoryStore();
    expect(inProcess({ ...store })).toBeUndefined();
    expect(inProcess(Object.create(store))).toBeUndefined();
    const patched = memoryStore();
    patched.claim = async () => ({ status: 'inProgress', retryAfterMs: 1 });
    expect(inProcess(patched)).toBeUndefined();
    expect(inProcess(spy(memoryStore()))).toBeUndefined();
    expect(inProcess({})).toBeUndefined();
    // A brand alone, without the class's calls, is not enough.
    const forged: Record<symbol, unknown> = {};
    forged[Symbol.for('holdfast.idempotency.inProcessStore')] = forged;
    expect(inProcess(forged)).toBeUndefined();
  });

  it('a subclass that overrides a method is called through it, not around it', async () => {
    const claims: string[] = [];
    class Audited extends MemoryStore {
      override async claim(key: string, fingerprint: string, leaseMs: number) {
        claims.push(key);
        return super.claim(key, fingerprint, leaseMs);
      }
    }
    const store = new Audited(100, 60_000, realClock);
    expect(inProcess(store)).toBeUndefined();
    const app = express();
    app.use(idempotency({ store, scope: 'global' }));
    app.post('/orders', (_req, res) => void res.status(201).json({ ok: true }));
    const port = await listenNode(createServer(app));
    const first = await send(`http://127.0.0.1:${port}/orders`, { key: 'k-audited', body: { a: 1 } });
    const again = await send(`http://127.0.0.1:${port}/orders`, { key: 'k-audited', body: { a: 1 } });
    expect([first.status, again.status]).toEqual([201, 201]);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(claims).toEqual(['http:*:k-audited', 'http:*:k-audited']);
    store.dispose();
  });
});

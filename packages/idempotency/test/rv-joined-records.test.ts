import express from 'express';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { encodeValue, memoryStore } from '../src/index.js';
import type { ClaimResult } from '../src/store.js';
import { closeServers, listen } from './http-support/support.js';

// Review of #19: a text body kept after the request's fingerprint. Through Express, a retry
// whose body is the first one's extended by (part of) the response kept is a mismatch, and
// replays are byte for byte (latin1 bytes, multibyte UTF-8, empty bodies). The public store
// methods take the text token they hand out, not a number (as before #19).

afterEach(closeServers);

async function echoApp() {
  const app = express();
  let runs = 0;
  app.use(express.raw({ type: '*/*' }), idempotency({ scope: 'global', store: memoryStore() }));
  app.post('/echo', (req, res) => {
    runs++;
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const reply = Buffer.from(req.get('x-reply') ?? '', 'base64');
    res.status(Number(req.get('x-status') ?? 200)).type('application/octet-stream');
    res.end(reply.length > 0 ? reply : body);
  });
  return { url: await listen(app), runs: () => runs };
}

async function post(url: string, key: string, body: Buffer, extra: Record<string, string> = {}) {
  const res = await fetch(`${url}/echo`, {
    method: 'POST',
    headers: { 'idempotency-key': key, 'content-type': 'application/octet-stream', ...extra },
    body,
  });
  return {
    status: res.status,
    bytes: Buffer.from(await res.arrayBuffer()),
    replayed: res.headers.get('idempotent-replayed'),
  };
}

describe('Express with memoryStore: records whose body follows the fingerprint', () => {
  it('replays every latin1 byte, multibyte UTF-8 and empty bodies exactly', async () => {
    const { url, runs } = await echoApp();
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const bodies = [
      all.subarray(0, 96),
      all.subarray(160, 256),
      all,
      Buffer.from('ünïcödé ✓ 𝄞', 'utf8'),
      Buffer.from('\u0000\u00ff'),
      Buffer.alloc(0),
    ];
    for (const [i, body] of bodies.entries()) {
      const first = await post(url, `k${i}`, body);
      const again = await post(url, `k${i}`, body);
      expect(again.replayed).toBe('true');
      expect(again.status).toBe(first.status);
      expect(again.bytes.equals(body)).toBe(true);
    }
    expect(runs()).toBe(bodies.length);
  });

  it('refuses with 422 a retry whose body is the first one extended by the response kept', async () => {
    const { url, runs } = await echoApp();
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 40 }),
        fc.uint8Array({ minLength: 1, maxLength: 40 }),
        async (requestBytes, replyBytes) => {
          const key = `p${Math.random()}`;
          const request = Buffer.from(requestBytes);
          const reply = Buffer.from(replyBytes);
          const extra = { 'x-reply': reply.toString('base64') };
          const first = await post(url, key, request, extra);
          expect(first.bytes.equals(reply)).toBe(true);
          const before = runs();
          for (const other of [Buffer.concat([request, reply]), Buffer.concat([request, reply.subarray(0, 1)])]) {
            expect((await post(url, key, other, extra)).status).toBe(422);
          }
          if (request.length > 1) expect((await post(url, key, request.subarray(0, -1), extra)).status).toBe(422);
          const again = await post(url, key, request, extra);
          expect(again.replayed).toBe('true');
          expect(again.bytes.equals(reply)).toBe(true);
          expect(runs()).toBe(before);
        },
      ),
      { numRuns: 40 },
    );
  });
});

function token(result: ClaimResult): string {
  if (result.status !== 'claimed') throw new Error(result.status);
  return result.token;
}

describe("memoryStore's public methods and tokens", () => {
  it('refuse the number of a live claim, as they did before #19: they take its text', async () => {
    const store = memoryStore();
    const text = token(await store.claim('k', 'fp', 60_000));
    const n = Number(text.slice(1));
    const forged = n as unknown as string;
    expect(await store.extend('k', forged, 60_000)).toBe(false);
    expect(await store.complete('k', forged, { kind: 'value', value: 1 }, 60_000)).toBe(false);
    expect(await store.release('k', forged)).toBe(false);
    for (const bad of [0, -1, 1.5, Number.NaN, 2 ** 53]) {
      expect(await store.complete('k', bad as unknown as string, { kind: 'value', value: 1 }, 60_000)).toBe(false);
    }
    expect(await store.complete('k', text, { kind: 'value', value: 'ü€' }, 60_000)).toBe(true);
    const found = await store.claim('k', 'fp', 60_000);
    if (found.status !== 'completed') throw new Error(found.status);
    expect(found.record.fingerprint).toBe('fp');
    expect(found.record.outcome).toEqual({ kind: 'value', value: 'ü€' });
    store.dispose();
  });

  it('count a record as the README says, whether its body follows the fingerprint or not', async () => {
    const store = memoryStore();
    const t = token(await store.claim('key', 'fingerprint', 60_000));
    const claimed = store.bytes;
    await store.complete('key', t, { kind: 'response', status: 200, headers: {}, body: Buffer.from('hello') }, 60_000);
    // A response: 16 + 2 per header character (2 for no headers, store.ts headerChars) + its body's bytes,
    // the same for a body kept after the fingerprint (5 bytes) as for one kept as a Buffer (200).
    expect(store.bytes - claimed).toBe(2 * 2 + 16 + 5);
    const t3 = token(await store.claim('key3', 'fingerprint', 60_000));
    const claimed3 = store.bytes;
    await store.complete(
      'key3',
      t3,
      { kind: 'response', status: 200, headers: {}, body: Buffer.alloc(200, 1) },
      60_000,
    );
    expect(store.bytes - claimed3).toBe(2 * 2 + 16 + 200);
    const t2 = token(await store.claim('key2', 'fingerprint', 60_000));
    const claimed2 = store.bytes;
    await store.complete('key2', t2, { kind: 'value', value: 'abc' }, 60_000);
    // A value: 2 per character of its encoding, kept after the fingerprint or not.
    expect(store.bytes - claimed2).toBe(2 * encodeValue('abc').length);
    store.dispose();
  });
});

import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { fingerprintOf, PREIMAGE_BYTES, preimageOf, requestFingerprint } from '../src/http/fingerprint.js';
import { digestOfPreimage, memoryStore, NOW, type StoreNow } from '../src/memory-store.js';

// An in-process store keeps a short request's fingerprinted bytes as they are (its preimage), not
// their SHA-256: two requests match when their bytes do. What must hold: the preimage is exactly
// what the fingerprint hashes (so a record claimed either way matches its retry claimed the other
// way), and no fingerprint a store shows is ever the bytes (a body may hold a secret).

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const canonicalType = fc.constantFrom(undefined, 'application/json', 'text/plain', 'application/x-www-form-urlencoded');
const anyType = fc.oneof(canonicalType, fc.constantFrom('Application/JSON', 'application/json; charset=utf-8', ''));
const request = fc.record({
  method: fc.constantFrom('POST', 'post', 'PUT', 'PATCH', 'DELETE', 'M-SEARCH'),
  url: fc.oneof(fc.constantFrom('/orders', '/orders?x=1', '/é'), fc.string({ maxLength: 40 })),
  type: anyType,
  encoding: fc.constantFrom(undefined, 'gzip'),
  body: fc.uint8Array({ minLength: 0, maxLength: PREIMAGE_BYTES + 20 }),
  headers: fc.array(
    fc.option(fc.oneof(fc.string({ maxLength: 8 }), fc.array(fc.string({ maxLength: 4 }), { maxLength: 2 })), {
      nil: undefined,
    }),
    { maxLength: 2 },
  ),
});

describe('preimageOf', () => {
  it('is exactly what fingerprintOf hashes, whenever it is given, and is given for every short request under a canonical type', () => {
    fc.assert(
      fc.property(request, (r) => {
        const body = Buffer.from(r.body);
        const preimage = preimageOf(r.method, r.url, r.type, r.encoding, body, r.headers);
        const fingerprint = fingerprintOf(r.method, r.url, r.type, r.encoding, body, r.headers);
        if (preimage !== undefined) {
          expect(preimage.length).toBeLessThanOrEqual(PREIMAGE_BYTES);
          expect(digestOfPreimage(preimage)).toBe(fingerprint);
        } else if (body.length > 0 && body.length <= 60 && !/[A-Z;\s"]/.test(r.type ?? '')) {
          // Short enough for any head of this size: only a long URL or headers leave it out.
          const head = Buffer.byteLength(`${r.method.length}:${r.method}${r.url.length}:${r.url}`);
          expect(head + (r.type?.length ?? 0) + 40 + 16 * r.headers.length).toBeGreaterThan(
            PREIMAGE_BYTES - body.length,
          );
        }
      }),
      { numRuns: 3_000 },
    );
  });

  it('differs when any byte of the body, the URL, the method or the type differs', () => {
    const body = Buffer.from('{"amount":4200}');
    const base = preimageOf('POST', '/orders', 'application/json', undefined, body, []);
    expect(base).toBeDefined();
    for (let i = 0; i < body.length; i++) {
      const other = Buffer.from(body);
      other[i] = (other[i] as number) ^ 1;
      expect(preimageOf('POST', '/orders', 'application/json', undefined, other, [])).not.toBe(base);
    }
    expect(preimageOf('PUT', '/orders', 'application/json', undefined, body, [])).not.toBe(base);
    expect(preimageOf('POST', '/order', 'application/json', undefined, body, [])).not.toBe(base);
    expect(preimageOf('POST', '/orders', 'text/plain', undefined, body, [])).not.toBe(base);
    expect(preimageOf('POST', '/orders', 'application/json', 'gzip', body, [])).not.toBe(base);
  });
});

describe('memoryStore with preimages', () => {
  const now = (store: object) => (store as Record<symbol, StoreNow>)[NOW] as Required<StoreNow>;
  const shape = { method: 'POST', url: '/pay', contentType: 'application/json', headers: [] };
  const secret = '{"card":"4242424242424242"}';
  const preimage = preimageOf('POST', '/pay', 'application/json', undefined, Buffer.from(secret), []) as string;
  const fingerprint = requestFingerprint({ ...shape, body: Buffer.from(secret) });

  it('matches a record claimed by its preimage with its fingerprint, and the other way round', async () => {
    const store = memoryStore();
    const claimed = now(store).claimPreimage('k1', preimage, 1_000);
    expect(claimed.status).toBe('claimed');
    if (claimed.status !== 'claimed') return;
    now(store).completeResponse('k1', claimed.token, 201, {}, 'ok', 60_000);
    // The public method, with the fingerprint: the same request.
    const found = await store.claim('k1', fingerprint, 1_000);
    expect(found.status).toBe('completed');
    // Another body: not the same request, either way.
    const other = preimageOf(
      'POST',
      '/pay',
      'application/json',
      undefined,
      Buffer.from('{"card":"4000"}'),
      [],
    ) as string;
    expect(now(store).claimPreimage('k1', other, 1_000).status).toBe('mismatch');
    expect((await store.claim('k1', digestOfPreimage(other), 1_000)).status).toBe('mismatch');

    const store2 = memoryStore();
    const first = await store2.claim('k2', fingerprint, 1_000);
    if (first.status !== 'claimed') throw new Error('not claimed');
    await store2.complete(
      'k2',
      first.token,
      { kind: 'response', status: 200, headers: {}, body: Buffer.from('x') },
      60_000,
    );
    expect(now(store2).claimPreimage('k2', preimage, 1_000).status).toBe('completed');
    expect(now(store2).claimPreimage('k2', other, 1_000).status).toBe('mismatch');
  });

  it('never shows the bytes: a record read through the public methods has the fingerprint', async () => {
    const store = memoryStore();
    const claimed = now(store).claimPreimage('k1', preimage, 1_000);
    if (claimed.status !== 'claimed') throw new Error('not claimed');
    now(store).completeResponse('k1', claimed.token, 201, {}, 'ok', 60_000);
    const found = await store.claim('k1', fingerprint, 1_000);
    if (found.status !== 'completed') throw new Error('not completed');
    expect(found.record.fingerprint).toBe(fingerprint);
    // Its times left out: a timestamp may hold the digits 4242 (one did, and this failed).
    expect(JSON.stringify({ ...found.record, createdAt: 0, completedAt: 0, expiresAt: 0 })).not.toContain('4242');
  });

  it('keeps as many records claimed by preimage as by fingerprint under maxBytes', () => {
    const a = memoryStore({ maxBytes: 5_000 });
    const b = memoryStore({ maxBytes: 5_000 });
    const body = Buffer.from('x'.repeat(60));
    for (let i = 0; i < 40; i++) {
      const url = `/o/${i}`;
      now(a).claimPreimage(`k${i}`, preimageOf('POST', url, '', undefined, body, []) as string, 60_000);
      now(b).claim(`k${i}`, fingerprintOf('POST', url, '', undefined, body, []), 60_000);
    }
    expect(a.snapshot()).toEqual(b.snapshot());
  });
});

describe('Fastify on a memoryStore', () => {
  it('stores a short request under its fingerprint as requestFingerprint gives it, and replays only the same bytes', async () => {
    const store = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { store, scope: 'global' });
    let runs = 0;
    app.post('/pay', async () => ({ run: ++runs }));
    const body = '{"card":"4242424242424242"}';
    const send = (payload: string) =>
      app.inject({
        method: 'POST',
        url: '/pay',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'k-9' },
        payload,
      });
    expect((await send(body)).json()).toEqual({ run: 1 });
    expect((await send(body)).headers['idempotent-replayed']).toBe('true');
    expect((await send(body.replace('42"}', '43"}'))).statusCode).toBe(422);
    const found = await store.claim(
      'http:*:k-9',
      requestFingerprint({
        method: 'POST',
        url: '/pay',
        contentType: 'application/json',
        headers: [],
        body: Buffer.from(body),
      }),
      1_000,
    );
    expect(found.status).toBe('completed');
    if (found.status === 'completed') expect(JSON.stringify(found.record)).not.toContain('4242');
    expect(runs).toBe(1);
  });
});

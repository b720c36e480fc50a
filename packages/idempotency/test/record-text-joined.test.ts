import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/fastify.js';
import { pickHeaders, replayableHeaders } from '../src/http/capture.js';
import { digestOfPreimage, type KeptRecord, keptBodyOf, memoryStore, storeToken } from '../src/memory-store.js';
import { setHeader } from '../src/store.js';
import { nowOf } from './memory-store-support.js';

// #19: a memoryStore() record keeps a body kept as text (a short response's bytes, a value's
// JSON) after the request's fingerprint, in one string (KeptRecord.split), so that one string
// fewer survives each young collection. What must hold: a retry matches its record exactly when
// its fingerprint (or preimage) is the record's, never when it is a prefix or an extension of
// the joined string; the body replayed and handed out is the one completed; a fingerprint shown
// is the request's alone. And a claim's token, a number on the calls without a promise, reaches
// a store method that took over (a spy) as the text its type says.

const apps: FastifyInstance[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const latin1 = fc.string({
  unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)),
  minLength: 1,
  maxLength: 60,
});

describe('a record whose body is kept after its fingerprint', () => {
  it('matches a retry only of the same request, never of a prefix or an extension of what it keeps', () => {
    fc.assert(
      fc.property(latin1, latin1, fc.boolean(), latin1, (request, body, raw, other) => {
        const store = memoryStore();
        const now = nowOf(store);
        // Claimed with its preimage (raw) or with a fingerprint (any text a store is handed).
        const claim = raw ? now.claimPreimage('k', request, 60_000) : now.claim('k', request, 60_000);
        if (claim.status !== 'claimed') throw new Error(claim.status);
        expect(now.completeResponse('k', claim.token, 201, {}, body, 60_000)).toBe(true);
        const again = raw ? now.claimPreimage('k', request, 60_000) : now.claim('k', request, 60_000);
        if (again.status !== 'completed') throw new Error(again.status);
        expect(keptBodyOf(again.record)).toBe(body);
        const candidates = [
          request + body,
          request + body.slice(0, 1),
          request + body + other,
          request.slice(0, -1),
          body,
          other,
          `${request}\u0000`,
        ];
        for (const candidate of candidates) {
          if (candidate === request) continue;
          const found = raw ? now.claimPreimage('k', candidate, 60_000) : now.claim('k', candidate, 60_000);
          expect({ candidate, status: found.status }).toEqual({ candidate, status: 'mismatch' });
        }
        store.dispose();
      }),
      { numRuns: 500 },
    );
  });

  it('matches a retry of the same request told by its hash, and shows the hash, not the bytes or the body', async () => {
    fc.assert(
      fc.asyncProperty(latin1, latin1, async (preimage, body) => {
        const store = memoryStore();
        const now = nowOf(store);
        const claim = now.claimPreimage('k', preimage, 60_000);
        if (claim.status !== 'claimed') throw new Error(claim.status);
        expect(now.completeResponse('k', claim.token, 200, { 'content-type': 'text/plain' }, body, 60_000)).toBe(true);
        // The general path: a fingerprint, the hash of those bytes.
        const digest = digestOfPreimage(preimage);
        const found = await store.claim('k', digest, 60_000);
        if (found.status !== 'completed') throw new Error(found.status);
        expect(found.record.fingerprint).toBe(digest);
        if (found.record.outcome.kind !== 'response') throw new Error(found.record.outcome.kind);
        expect(Buffer.from(found.record.outcome.body).toString('latin1')).toBe(body);
        expect((await store.claim('k', digestOfPreimage(preimage + body), 60_000)).status).toBe('mismatch');
        const kept = now.claim('k', digest, 60_000);
        if (kept.status !== 'completed') throw new Error(kept.status);
        expect(keptBodyOf(kept.record)).toBe(body);
        store.dispose();
      }),
      { numRuns: 200 },
    );
  });

  it('hands out a value completed through the store methods, and a response body as its bytes', async () => {
    const store = memoryStore();
    for (const value of [{ id: 1, note: 'ü' }, 'text', 0, null, [1, [2]]]) {
      const key = `v${JSON.stringify(value)}`;
      const claim = await store.claim(key, 'fp', 60_000);
      if (claim.status !== 'claimed') throw new Error(claim.status);
      expect(await store.complete(key, claim.token, { kind: 'value', value }, 60_000)).toBe(true);
      const found = await store.claim(key, 'fp', 60_000);
      if (found.status !== 'completed' || found.record.outcome.kind !== 'value') throw new Error(found.status);
      expect(found.record.outcome.value).toEqual(value);
      expect(found.record.fingerprint).toBe('fp');
    }
    // An empty body and an abort keep nothing after the fingerprint.
    const claim = nowOf(store).claim('e', 'fp', 60_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    expect(nowOf(store).completeResponse('e', claim.token, 204, {}, '', 60_000)).toBe(true);
    const empty = nowOf(store).claim('e', 'fp', 60_000);
    if (empty.status !== 'completed') throw new Error(empty.status);
    expect((empty.record as KeptRecord).split).toBe(0);
    expect(keptBodyOf(empty.record)).toBe('');
    store.dispose();
  });

  it('is replayed byte for byte by the Fastify plugin, and a request whose body extends the first is told apart', async () => {
    const store = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { store, scope: 'global' });
    let runs = 0;
    app.post('/orders', async (request, reply) => {
      runs++;
      return reply.code(201).send({ id: runs, got: request.body });
    });
    const post = (key: string, payload: string) =>
      app.inject({
        method: 'POST',
        url: '/orders',
        // Text, not JSON: a body that extends the first is no JSON, and is read all the same.
        headers: { 'content-type': 'text/plain', 'idempotency-key': key },
        payload,
      });
    const first = await post('a', '{"amount":1}');
    expect(first.statusCode).toBe(201);
    const replay = await post('a', '{"amount":1}');
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(replay.body).toBe(first.body);
    // The first request's body followed by the start of its response: what the record keeps.
    expect((await post('a', `{"amount":1}${first.body.slice(0, 5)}`)).statusCode).toBe(422);
    expect((await post('a', '{"amount":2}')).statusCode).toBe(422);
    expect(runs).toBe(1);
  });
});

describe('a claim token of the calls without a promise', () => {
  it('reaches a store method that took over as its text', async () => {
    const store = memoryStore();
    const app = Fastify();
    apps.push(app);
    await app.register(idempotency, { store, scope: 'global' });
    const seen: unknown[] = [];
    const complete = store.complete.bind(store);
    app.post('/orders', async (_request, reply) => {
      // Patched while the run holds its key (an outage drill, a spy): the run completes through it.
      store.complete = async (key, token, outcome, ttlMs) => {
        seen.push(token);
        return complete(key, token, outcome, ttlMs);
      };
      return reply.code(201).send({ ok: true });
    });
    const post = () =>
      app.inject({
        method: 'POST',
        url: '/orders',
        headers: { 'content-type': 'application/json', 'idempotency-key': 't1' },
        payload: '{}',
      });
    expect((await post()).statusCode).toBe(201);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatch(/^m[1-9][0-9]*$/);
    const replay = await post();
    expect(replay.statusCode).toBe(201);
    expect(replay.headers['idempotent-replayed']).toBe('true');
    expect(storeToken(7)).toBe('m7');
    expect(storeToken('m7')).toBe('m7');
  });
});

describe('pickHeaders', () => {
  // What it did before it lower-cased only names not allowed as they are.
  function reference(headers: Record<string, unknown>, allowed: ReadonlySet<string>): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const connection = headers.connection ?? headers.Connection;
    const hopByHop = connection === undefined ? '' : String(connection).toLowerCase();
    for (const rawName of Object.keys(headers)) {
      const value = headers[rawName];
      const name = rawName.toLowerCase();
      if (value === undefined || !allowed.has(name)) continue;
      if (hopByHop !== '' && hopByHop.split(',').some((h) => h.trim() === name)) continue;
      setHeader(out, name, Array.isArray(value) ? value.map(String) : String(value));
    }
    return out;
  }

  const name = fc.oneof(
    fc.constantFrom('content-type', 'Content-Type', 'CONTENT-TYPE', 'location', 'Location', 'x-trace', 'X-Trace'),
    fc.constantFrom('connection', 'Connection', 'set-cookie', 'etag', 'ETag', '__proto__', 'x-other'),
    fc.string({ maxLength: 6 }),
  );
  const value = fc.oneof(
    fc.string({ maxLength: 6 }),
    fc.integer(),
    fc.array(fc.oneof(fc.string({ maxLength: 4 }), fc.integer()), { maxLength: 3 }),
    fc.constant(undefined),
    fc.constantFrom('x-trace', 'Location, x-trace', 'keep-alive'),
  );

  it('picks what it picked when every name was lower-cased', () => {
    const allowed = replayableHeaders(['x-trace']);
    fc.assert(
      fc.property(fc.array(fc.tuple(name, value), { maxLength: 8 }), (pairs) => {
        const headers: Record<string, unknown> = {};
        for (const [n, v] of pairs) setHeader(headers, n, v);
        const picked = pickHeaders(headers as never, allowed);
        expect(Object.entries(picked)).toEqual(Object.entries(reference(headers, allowed)));
      }),
      { numRuns: 2_000 },
    );
  });
});

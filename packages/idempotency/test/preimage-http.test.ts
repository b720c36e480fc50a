import { execFile } from 'node:child_process';
import { request } from 'node:http';
import { promisify } from 'node:util';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { fingerprintOf } from '../src/http/fingerprint.js';
import { type MemoryStore, memoryStore } from '../src/memory-store.js';
import type { IdempotencyStore } from '../src/store.js';
import { expressFramework, fastifyFramework, type TestApp, type TestOptions } from './http-support/apps.js';

// The same request matches whether its record was claimed by preimage or by fingerprint, on both
// frameworks, with and without `wait`, under a scope function and the global one; any byte of
// method, URL, type, encoding, a selected header or the body that differs is a 422; and the
// bytes never show through the store's methods, its snapshot, an event or an answer.

const run = promisify(execFile);
const apps: TestApp[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

const SECRET = '4242424242424242';
const body = `{"card":"${SECRET}"}`;

/**
 * The same records, reached through the store's methods only (a wrapper is not the in-process
 * store): its engine claims by fingerprint, as an engine or store of an older copy does.
 */
function byMethods(store: MemoryStore): IdempotencyStore {
  return {
    claim: (key, fingerprint, leaseMs) => store.claim(key, fingerprint, leaseMs),
    complete: (key, token, outcome, ttlMs) => store.complete(key, token, outcome, ttlMs),
    release: (key, token) => store.release(key, token),
    extend: (key, token, leaseMs) => store.extend(key, token, leaseMs),
  };
}

type Send = (over?: {
  url?: string;
  type?: string;
  body?: string | Buffer;
  headers?: Record<string, string>;
}) => Promise<Response>;

function sender(app: TestApp, key: string, account: string): Send {
  return (over = {}) =>
    fetch(`${app.url}${over.url ?? '/orders'}`, {
      method: 'POST',
      headers: {
        'content-type': over.type ?? 'application/json',
        'idempotency-key': key,
        'x-account': account,
        'x-tenant': 't1',
        ...over.headers,
      },
      body: over.body ?? body,
    });
}

const cases = [expressFramework, fastifyFramework].flatMap((framework) =>
  [false, true].flatMap((scoped) =>
    [undefined, { timeout: 2_000, interval: 5 }].map((wait) => ({ framework, scoped, wait })),
  ),
);

describe.each(cases)('$framework.name, scoped $scoped, wait $wait', ({ framework, scoped, wait }) => {
  const options = (store: MemoryStore): TestOptions => ({ store, scoped, wait, fingerprint: ['x-tenant'] });

  it('replays the same bytes, answers 422 to any byte changed, runs once', async () => {
    const store = memoryStore();
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const app = await framework.start({ ...options(store), bus });
    apps.push(app);
    const send = sender(app, 'k1', 'alice');
    const first = await send();
    expect(first.status).toBe(201);
    const firstText = await first.text();
    const again = await send();
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.text()).toBe(firstText);
    // The same type in another case: fingerprinted in canonical form (no preimage), the same request.
    const cased = await send({ type: 'Application/JSON' });
    expect([cased.status, cased.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    // And the other way round: a record claimed by fingerprint, its retry by preimage.
    const byFingerprint = sender(app, 'k7', 'alice');
    expect((await byFingerprint({ type: 'Application/JSON' })).status).toBe(201);
    const byPreimage = await byFingerprint();
    expect([byPreimage.status, byPreimage.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect((await byFingerprint({ body: `${body}\n` })).status).toBe(422);
    const flipped = Buffer.from(body);
    flipped[12] = (flipped[12] as number) ^ 1;
    const different = [
      await send({ body: flipped }),
      await send({ url: '/orders?x' }),
      await send({ type: 'text/plain' }),
      await send({ headers: { 'x-tenant': 't2' } }),
      await send({ headers: { 'content-encoding': 'identity' } }),
      await send({ body: `${body} ` }),
    ];
    // The `fingerprint` header sent twice (Node joins them with ", "): not the one sent once.
    const twice = await fetch(`${app.url}/orders`, {
      method: 'POST',
      headers: [
        ['content-type', 'application/json'],
        ['idempotency-key', 'k1'],
        ['x-account', 'alice'],
        ['x-tenant', 't1'],
        ['x-tenant', 't1'],
      ],
      body,
    });
    expect([...different.map((r) => r.status), twice.status]).toEqual([422, 422, 422, 422, 422, 422, 422]);
    // Another caller with the same key: its own record under a scope, the 422 of a mismatch without.
    const bob = await sender(app, 'k1', 'bob')();
    expect(bob.status).toBe(201);
    expect(bob.headers.get('idempotent-replayed')).toBe(scoped ? null : 'true');
    expect(app.calls.get('orders')).toBe(scoped ? 3 : 2);
    // No byte of the body anywhere a user or a listener sees.
    const seen = JSON.stringify([events, store.snapshot(), await Promise.all(different.map((r) => r.text()))]);
    expect(seen).not.toContain(SECRET);
    const stored = scoped ? 'http:5:alice:k1' : 'http:*:k1';
    const found = await store.claim(stored, 'not-this-request', 1_000);
    expect(found.status).toBe('mismatch');
  });

  it('matches a record claimed by preimage with its retry claimed by fingerprint, and the other way round', async () => {
    const store = memoryStore();
    const newer = await framework.start(options(store));
    const older = await framework.start({ ...options(store), store: byMethods(store) });
    apps.push(newer, older);
    expect((await sender(newer, 'k2', 'alice')()).status).toBe(201);
    const replayed = await sender(older, 'k2', 'alice')();
    expect([replayed.status, replayed.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect((await sender(older, 'k2', 'alice')({ url: '/orders?y' })).status).toBe(422);
    expect((await sender(older, 'k3', 'alice')()).status).toBe(201);
    const back = await sender(newer, 'k3', 'alice')();
    expect([back.status, back.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect((await sender(newer, 'k3', 'alice')({ headers: { 'x-tenant': 't3' } })).status).toBe(422);
    expect([newer.calls.get('orders'), older.calls.get('orders')]).toEqual([1, 1]);
    // The record's fingerprint, as the store's method shows it, is the SHA-256, never the bytes.
    const fingerprint = fingerprintOf('POST', '/orders', 'application/json', undefined, Buffer.from(body), ['t1']);
    const found = await store.claim(scoped ? 'http:5:alice:k2' : 'http:*:k2', fingerprint, 1_000);
    expect(found.status === 'completed' && found.record.fingerprint).toBe(fingerprint);
  });

  it('replays a retry whose body comes one byte a chunk, Content-Length known and chunked', async () => {
    const store = memoryStore();
    const app = await framework.start(options(store));
    apps.push(app);
    expect((await sender(app, 'k6', 'alice')()).status).toBe(201);
    for (const chunked of [false, true]) {
      const answer = await new Promise<{ status: number; replayed: unknown }>((resolve, reject) => {
        const { port } = new URL(app.url);
        const bytes = Buffer.from(body);
        const headers: Record<string, string> = {
          'content-type': 'application/json',
          'idempotency-key': 'k6',
          'x-account': 'alice',
          'x-tenant': 't1',
        };
        if (!chunked) headers['content-length'] = String(bytes.length);
        const req = request({ host: '127.0.0.1', port, path: '/orders', method: 'POST', headers }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, replayed: res.headers['idempotent-replayed'] }));
        });
        req.on('error', reject);
        let i = 0;
        const next = () => {
          if (i === bytes.length) return req.end();
          req.write(bytes.subarray(i, ++i));
          setTimeout(next, 1);
        };
        next();
      });
      expect(answer).toEqual({ status: 201, replayed: 'true' });
    }
    expect(app.calls.get('orders')).toBe(1);
  });

  if (wait !== undefined) {
    it('a retry that waits for a running first request replays it once it completes', async () => {
      const store = memoryStore();
      const app = await framework.start(options(store));
      apps.push(app);
      const send = sender(app, 'k4', 'alice');
      const first = send({ url: '/slow' });
      while (app.gate.entered === 0) await new Promise((r) => setTimeout(r, 2));
      const second = send({ url: '/slow' });
      const mismatched = send({ url: '/slow', body: '{"card":"4"}' });
      await new Promise((r) => setTimeout(r, 30));
      app.gate.open();
      const [a, b, c] = await Promise.all([first, second, mismatched]);
      expect([a.status, b.status, b.headers.get('idempotent-replayed'), c.status]).toEqual([200, 200, 'true', 422]);
      expect(await b.text()).toBe(await a.text());
      expect(app.calls.get('slow')).toBe(1);
    });
  }
});

describe('ESM and CJS builds sharing one store, in one Node process', () => {
  it.each([
    ['cjs', 'esm'],
    ['esm', 'cjs'],
  ] as const)(
    'a %s store, the %s middleware: replays the same request, 422 for another body',
    async (storeBuild, appBuild) => {
      const dist = new URL('../dist/', import.meta.url).pathname;
      const load = (build: string, entry: string) =>
        build === 'cjs'
          ? `require(${JSON.stringify(`${dist}${entry}.cjs`)})`
          : `await import(${JSON.stringify(`${dist}${entry}.js`)})`;
      const script = `
      import { createRequire } from 'node:module';
      const require = createRequire(${JSON.stringify(dist)});
      const express = require('express');
      const store = (${load(storeBuild, 'index')}).memoryStore();
      const { idempotency } = ${load(appBuild, 'express')};
      const app = express();
      let runs = 0;
      app.use(idempotency({ store, scope: 'global' }));
      app.post('/orders', (_req, res) => { runs++; res.status(201).send('made'); });
      const server = app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      const send = (body) => fetch('http://127.0.0.1:' + server.address().port + '/orders', {
        method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'k5' }, body });
      const out = [];
      for (const body of [${JSON.stringify(body)}, ${JSON.stringify(body)}, '{"card":"4"}']) {
        const r = await send(body);
        out.push(r.status + ':' + r.headers.get('idempotent-replayed'));
      }
      const found = await store.claim('http:*:k5', 'x', 1000);
      console.log(JSON.stringify({ out, runs, found: found.status, snapshot: store.snapshot() }));
      server.close();
    `;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
        cwd: new URL('..', import.meta.url).pathname,
      });
      const result = JSON.parse(stdout);
      expect(result.out).toEqual(['201:null', '201:true', '422:null']);
      expect([result.runs, result.found]).toEqual([1, 'mismatch']);
      expect(stdout).not.toContain(SECRET);
    },
  );
});

import { createBus, type EventOf } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { problemTypes } from '../../src/http/index.js';
import type { IdempotencyStore } from '../../src/index.js';
import { bigBody, type Framework, streamChunks, type TestApp, type TestOptions } from './apps.js';
import { brokenStore, eventually, hungStore, newKey, send, spy } from './support.js';

/** A store for one test, and how to tidy up after it. */
export interface StoreFactory {
  readonly name: string;
  make(): Promise<IdempotencyStore> | IdempotencyStore;
}

function expectProblem(res: { status: number; headers: Headers; json(): unknown }, status: number, type: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  expect(res.json()).toMatchObject({ type, status, title: expect.any(String), detail: expect.any(String) });
  expect(res.headers.get('idempotent-replayed')).toBeNull();
}

/**
 * The HTTP behaviour of the middleware, over real HTTP on 127.0.0.1, the same for every
 * framework and store. Each rule of the issue is one test.
 */
export function httpConformance(framework: Framework, stores: StoreFactory): void {
  describe(`${framework.name} + ${stores.name}: Idempotency-Key over HTTP`, () => {
    const apps: TestApp[] = [];
    afterEach(async () => {
      for (const app of apps.splice(0)) {
        app.gate.open();
        await app.close();
      }
    });
    async function start(options: Partial<TestOptions> = {}) {
      const store = spy(options.store ?? (await stores.make()));
      const app = await framework.start({ ...options, store });
      apps.push(app);
      return { app, store, url: (path: string) => app.url + path };
    }

    it('runs the first request once and replays its status, headers and body with Idempotent-Replayed', async () => {
      const { app, url } = await start();
      const key = newKey();
      const first = await send(url('/orders'), { key, body: { amount: 5 } });
      expect(first.status).toBe(201);
      expect(first.headers.get('idempotent-replayed')).toBeNull();
      const again = await send(url('/orders'), { key, body: { amount: 5 } });
      expect(app.calls.get('orders')).toBe(1);
      expect(again.status).toBe(201);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.bytes.equals(first.bytes)).toBe(true);
      expect(again.headers.get('content-length')).toBe(String(first.bytes.length));
      for (const name of ['content-type', 'location', 'etag', 'cache-control', 'link']) {
        expect(again.headers.get(name), name).toBe(first.headers.get(name));
      }
      expect(again.headers.get('location')).toBe('/orders/1');
    });

    it('never replays Set-Cookie, WWW-Authenticate or headers off the allow-list, even when listed', async () => {
      const { url } = await start({ replayHeaders: ['x-request-n', 'set-cookie', 'www-authenticate'] });
      const key = newKey();
      const first = await send(url('/orders'), { key, body: {} });
      expect(first.headers.get('set-cookie')).toContain('session=secret-1');
      const again = await send(url('/orders'), { key, body: {} });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.headers.get('set-cookie')).toBeNull();
      expect(again.headers.get('www-authenticate')).toBeNull();
      expect(again.headers.get('x-request-n')).toBe('1');
    });

    it('does not replay headers that are not allow-listed', async () => {
      const { url } = await start();
      const key = newKey();
      await send(url('/orders'), { key, body: {} });
      const again = await send(url('/orders'), { key, body: {} });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.headers.get('x-request-n')).toBeNull();
    });

    it('treats a quoted key ("abc") and a bare one (abc) as the same key', async () => {
      const { app, url } = await start();
      const key = newKey();
      await send(url('/orders'), { key: `"${key}"`, body: { a: 1 } });
      const again = await send(url('/orders'), { key, body: { a: 1 } });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(app.calls.get('orders')).toBe(1);
    });

    it('fingerprints the bytes on the wire: the same JSON sent with other whitespace is another request', async () => {
      const { app, url } = await start();
      const key = newKey();
      const raw = '{"a":1,"b":{"x":[1,2],"y":"z"}}';
      await send(url('/orders'), { key, raw, contentType: 'application/json' });
      const same = await send(url('/orders'), { key, raw, contentType: 'application/json' });
      expect(same.headers.get('idempotent-replayed')).toBe('true');
      const reordered = await send(url('/orders'), {
        key,
        raw: '{ "b" : { "y":"z", "x":[ 1, 2 ] },\n  "a": 1 }',
        contentType: 'application/json',
      });
      expectProblem(reordered, 422, problemTypes.mismatch);
      expect(app.calls.get('orders')).toBe(1);
    });

    it('answers 422 to the same key with a different body, and still replays the original', async () => {
      const bus = createBus();
      const mismatches: EventOf<'idempotency.mismatch'>[] = [];
      bus.on('idempotency.mismatch', (e) => mismatches.push(e));
      const { app, url } = await start({ bus });
      const key = newKey();
      const first = await send(url('/orders'), { key, body: { amount: 5 } });
      const other = await send(url('/orders'), { key, body: { amount: 500 } });
      expectProblem(other, 422, problemTypes.mismatch);
      const original = await send(url('/orders'), { key, body: { amount: 5 } });
      expect(original.headers.get('idempotent-replayed')).toBe('true');
      expect(original.bytes.equals(first.bytes)).toBe(true);
      expect(app.calls.get('orders')).toBe(1);
      expect(mismatches).toEqual([expect.objectContaining({ type: 'idempotency.mismatch', key })]);
    });

    it('answers 422 to the same key on another URL or method', async () => {
      const { app, url } = await start();
      const key = newKey();
      await send(url('/orders'), { key, body: {} });
      expectProblem(await send(url('/orders?draft=1'), { key, body: {} }), 422, problemTypes.mismatch);
      expectProblem(await send(url('/orders'), { method: 'PATCH', key, body: {} }), 422, problemTypes.mismatch);
      expect(app.calls.get('orders')).toBe(1);
    });

    it('hashes non-JSON bodies as raw bytes', async () => {
      const { app, url } = await start();
      const key = newKey();
      await send(url('/text'), { key, raw: 'hello world' });
      expect((await send(url('/text'), { key, raw: 'hello world' })).headers.get('idempotent-replayed')).toBe('true');
      expectProblem(await send(url('/text'), { key, raw: 'hello  world' }), 422, problemTypes.mismatch);
      expect(app.calls.get('text')).toBe(1);
    });

    it('adds the headers named in `fingerprint` to the fingerprint', async () => {
      const { url } = await start({ fingerprint: ['x-tenant'] });
      const key = newKey();
      await send(url('/orders'), { key, body: {}, headers: { 'x-tenant': 'a' } });
      const same = await send(url('/orders'), { key, body: {}, headers: { 'x-tenant': 'a' } });
      expect(same.headers.get('idempotent-replayed')).toBe('true');
      expectProblem(
        await send(url('/orders'), { key, body: {}, headers: { 'x-tenant': 'b' } }),
        422,
        problemTypes.mismatch,
      );
    });

    it('answers 400 to a malformed key before the store is touched', async () => {
      const { app, store, url } = await start();
      const bad = ['x'.repeat(256), '""', '"unterminated', 'two words', 'caf\u00e9', '"a";param=1', '"a\\b"'];
      for (const key of bad) {
        const res = await send(url('/orders'), { key, body: {} }).catch(() => undefined);
        // fetch itself refuses some header values (non-Latin-1): those never reach the server.
        if (res === undefined) continue;
        expectProblem(res, 400, problemTypes.invalidKey);
      }
      expect((await send(url('/orders'), { key: 'x'.repeat(255), body: {} })).status).toBe(201);
      expect(store.counts.claim).toBe(1);
      expect(app.calls.get('orders')).toBe(1);
    });

    it('answers 400 to a key sent twice', async () => {
      const { store, url } = await start();
      const headers = new Headers({ 'content-type': 'application/json' });
      headers.append('idempotency-key', 'one');
      headers.append('idempotency-key', 'two');
      const res = await fetch(url('/orders'), { method: 'POST', headers, body: '{}' });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ type: problemTypes.invalidKey });
      expect(store.counts.claim).toBe(0);
    });

    it('answers 400 to a missing key when `required`, before the store is touched', async () => {
      const { app, store, url } = await start({ required: true });
      expectProblem(await send(url('/orders'), { body: {} }), 400, problemTypes.missingKey);
      expect(store.counts.claim).toBe(0);
      expect(app.calls.get('orders')).toBeUndefined();
    });

    it('lets a request without a key through when not required, every time', async () => {
      const { app, store, url } = await start();
      await send(url('/orders'), { body: {} });
      const second = await send(url('/orders'), { body: {} });
      expect(second.headers.get('idempotent-replayed')).toBeNull();
      expect(app.calls.get('orders')).toBe(2);
      expect(store.counts.claim).toBe(0);
    });

    it('guards PATCH, and lets GET, PUT and DELETE through untouched even with a key', async () => {
      const { app, store, url } = await start({ required: true });
      const key = newKey();
      for (const method of ['GET', 'PUT', 'DELETE', 'PUT']) {
        const res = await send(url('/orders'), { method, key, body: method === 'GET' ? undefined : {} });
        expect(res.status).toBe(201);
        expect(res.headers.get('idempotent-replayed')).toBeNull();
      }
      expect(app.calls.get('orders')).toBe(4);
      expect(store.counts.claim).toBe(0);
      await send(url('/orders'), { method: 'PATCH', key, body: {} });
      const patched = await send(url('/orders'), { method: 'PATCH', key, body: {} });
      expect(patched.headers.get('idempotent-replayed')).toBe('true');
      expect(app.calls.get('orders')).toBe(5);
    });

    it('runs the handler exactly once for 100 concurrent requests with the same key', async () => {
      const { app, url } = await start();
      const key = newKey();
      const responses = await Promise.all(
        Array.from({ length: 100 }, () => send(url('/orders'), { key, body: { amount: 7 } })),
      );
      expect(app.calls.get('orders')).toBe(1);
      const statuses = new Set(responses.map((r) => r.status));
      expect([...statuses].every((s) => s === 201 || s === 409)).toBe(true);
      const originals = responses.filter((r) => r.status === 201 && r.headers.get('idempotent-replayed') === null);
      expect(originals).toHaveLength(1);
      for (const r of responses.filter((r) => r.status === 201)) expect(r.json()).toMatchObject({ n: 1 });
    });

    it('answers 409 with Retry-After while the first request runs, then replays', async () => {
      const { app, url } = await start();
      const key = newKey();
      const first = send(url('/slow'), { key, body: {} });
      await eventually(() => app.gate.entered === 1);
      const during = await Promise.all(Array.from({ length: 20 }, () => send(url('/slow'), { key, body: {} })));
      for (const res of during) {
        expectProblem(res, 409, problemTypes.inProgress);
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      }
      app.gate.open();
      expect((await first).status).toBe(200);
      const after = await send(url('/slow'), { key, body: {} });
      expect(after.headers.get('idempotent-replayed')).toBe('true');
      expect(app.calls.get('slow')).toBe(1);
    });

    it('with `wait`, holds a retry until the first request completes and replays it', async () => {
      const { app, url } = await start({ wait: { timeout: 10_000, interval: 20 } });
      const key = newKey();
      const first = send(url('/slow'), { key, body: {} });
      await eventually(() => app.gate.entered === 1);
      const held = send(url('/slow'), { key, body: {} });
      await new Promise((r) => setTimeout(r, 100));
      app.gate.open();
      const [a, b] = await Promise.all([first, held]);
      expect(b.status).toBe(200);
      expect(b.headers.get('idempotent-replayed')).toBe('true');
      expect(b.bytes.equals(a.bytes)).toBe(true);
      expect(app.calls.get('slow')).toBe(1);
    });

    it('with `wait`, answers 409 once the wait runs out', async () => {
      const { app, url } = await start({ wait: { timeout: 150, interval: 30 } });
      const key = newKey();
      void send(url('/slow'), { key, body: {} }).catch(() => {});
      await eventually(() => app.gate.entered === 1);
      expectProblem(await send(url('/slow'), { key, body: {} }), 409, problemTypes.inProgress);
    });

    it('scopes keys to the caller: no replay, no 409 and no 422 across callers', async () => {
      const { app, url } = await start({ scoped: true });
      const key = newKey();
      const alice = await send(url('/orders'), { key, body: { who: 'alice' }, headers: { 'x-account': 'alice' } });
      const bob = await send(url('/orders'), { key, body: { who: 'bob' }, headers: { 'x-account': 'bob' } });
      expect(bob.status).toBe(201);
      expect(bob.headers.get('idempotent-replayed')).toBeNull();
      expect(bob.json()).toMatchObject({ n: 2, body: { who: 'bob' } });
      const aliceAgain = await send(url('/orders'), { key, body: { who: 'alice' }, headers: { 'x-account': 'alice' } });
      expect(aliceAgain.bytes.equals(alice.bytes)).toBe(true);
      expect(app.calls.get('orders')).toBe(2);

      // While alice's request runs, bob's request with the same key runs too.
      const slowKey = newKey();
      const running = send(url('/slow'), { key: slowKey, body: {}, headers: { 'x-account': 'alice' } });
      await eventually(() => app.gate.entered === 1);
      const bobSlow = send(url('/slow'), { key: slowKey, body: {}, headers: { 'x-account': 'bob' } });
      await eventually(() => app.gate.entered === 2);
      app.gate.open();
      expect((await running).status).toBe(200);
      expect((await bobSlow).status).toBe(200);
    });

    it('replays a streamed, chunked response byte for byte', async () => {
      const { app, url } = await start();
      const key = newKey();
      const first = await send(url('/stream'), { key, body: {} });
      const expected = Buffer.concat(streamChunks);
      expect(first.bytes.equals(expected)).toBe(true);
      const again = await send(url('/stream'), { key, body: {} });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.bytes.equals(expected)).toBe(true);
      expect(again.headers.get('content-length')).toBe(String(expected.length));
      expect(again.headers.get('content-type')).toBe('application/octet-stream');
      expect(app.calls.get('stream')).toBe(1);
    });

    it('releases the key when the handler throws, so a retry runs again', async () => {
      const bus = createBus();
      const released: EventOf<'idempotency.release'>[] = [];
      bus.on('idempotency.release', (e) => released.push(e));
      const { app, url } = await start({ bus });
      const key = newKey();
      expect((await send(url('/flaky'), { key, body: {} })).status).toBe(500);
      const retry = await send(url('/flaky'), { key, body: {} });
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBeNull();
      const replay = await send(url('/flaky'), { key, body: {} });
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(app.calls.get('flaky')).toBe(2);
      expect(released).toEqual([expect.objectContaining({ key, code: 'HTTP_500' })]);
    });

    it('releases the key of a 5xx response by default', async () => {
      const { app, url } = await start();
      const key = newKey();
      await send(url('/unavailable'), { key, body: {} });
      const retry = await send(url('/unavailable'), { key, body: {} });
      expect(retry.headers.get('idempotent-replayed')).toBeNull();
      expect(app.calls.get('unavailable')).toBe(2);
    });

    it('stores and replays a 5xx response with `store5xx`', async () => {
      const { app, url } = await start({ store5xx: true });
      const key = newKey();
      const first = await send(url('/unavailable'), { key, body: {} });
      const again = await send(url('/unavailable'), { key, body: {} });
      expect(again.status).toBe(503);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.bytes.equals(first.bytes)).toBe(true);
      expect(app.calls.get('unavailable')).toBe(1);
    });

    it('stores and replays a 4xx response the handler produced', async () => {
      const { app, url } = await start();
      const key = newKey();
      const first = await send(url('/invalid'), { key, body: {} });
      expect(first.status).toBe(400);
      const again = await send(url('/invalid'), { key, body: {} });
      expect(again.status).toBe(400);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(again.bytes.equals(first.bytes)).toBe(true);
      expect(app.calls.get('invalid')).toBe(1);
    });

    it('sends a response over `maxResponseBytes` in full, releases its key and says why on the bus', async () => {
      const bus = createBus();
      const released: EventOf<'idempotency.release'>[] = [];
      bus.on('idempotency.release', (e) => released.push(e));
      const { app, url } = await start({ bus, maxResponseBytes: 1024 });
      const key = newKey();
      const first = await send(url('/big'), { key, body: {} });
      expect(first.text).toBe(bigBody);
      const retry = await send(url('/big'), { key, body: {} });
      expect(retry.text).toBe(bigBody);
      expect(retry.headers.get('idempotent-replayed')).toBeNull();
      expect(app.calls.get('big')).toBe(2);
      expect(released[0]).toMatchObject({ type: 'idempotency.release', key, code: 'E_RESPONSE_TOO_LARGE' });
    });

    it('stores the result when the client disconnects mid-request', async () => {
      const { app, url } = await start();
      const key = newKey();
      const abort = new AbortController();
      const gone = send(url('/slow'), { key, body: {}, signal: abort.signal }).catch((e: unknown) => e);
      await eventually(() => app.gate.entered === 1);
      abort.abort();
      await gone;
      // Let the server see the connection close before the handler finishes.
      await new Promise((r) => setTimeout(r, 100));
      app.gate.open();
      let replay: Awaited<ReturnType<typeof send>> | undefined;
      await eventually(async () => {
        replay = await send(url('/slow'), { key, body: {} });
        return replay.status !== 409;
      });
      expect(replay?.status).toBe(200);
      expect(replay?.headers.get('idempotent-replayed')).toBe('true');
      expect(replay?.json()).toEqual({ n: 1 });
      expect(app.calls.get('slow')).toBe(1);
    });

    it('a client leaving a streamed response: what the handler then ends is stored whole, else the response-lost problem; never a second run', async () => {
      const { app, url } = await start();
      const key = newKey();
      const abort = new AbortController();
      const res = await fetch(url('/gated-stream'), {
        method: 'POST',
        headers: { 'idempotency-key': key, 'content-type': 'application/json' },
        body: '{}',
        signal: abort.signal,
      });
      const reader = res.body?.getReader();
      const first = await reader?.read();
      expect(Buffer.from(first?.value ?? []).toString()).toContain('chunk one');
      abort.abort();
      await new Promise((r) => setTimeout(r, 100));
      app.gate.open();
      let replay: Awaited<ReturnType<typeof send>> | undefined;
      await eventually(async () => {
        replay = await send(url('/gated-stream'), { key, body: {} });
        return replay.status !== 409;
      });
      // Express: the handler writes on after the client left and ends the response: stored whole.
      // Fastify: the reply was a Readable, stopped when the client left: it never ends, and the
      // response-lost problem is stored. Either way the retry does not run the handler again
      // (the key was released, and it did).
      expect(replay?.headers.get('idempotent-replayed')).toBe('true');
      if (framework.name === 'fastify') {
        expect({ status: replay?.status, problem: replay?.json() }).toMatchObject({
          status: 500,
          problem: { type: problemTypes.responseLost },
        });
      } else {
        expect({ status: replay?.status, body: replay?.bytes }).toEqual({
          status: 200,
          body: Buffer.concat(streamChunks),
        });
      }
      expect(app.calls.get('gated-stream')).toBe(1);
    });

    it('lets no client header fake or skip a replay', async () => {
      const { app, url } = await start();
      const key = newKey();
      const faked = await send(url('/orders'), { key, body: {}, headers: { 'idempotent-replayed': 'true' } });
      expect(faked.headers.get('idempotent-replayed')).toBeNull();
      expect(app.calls.get('orders')).toBe(1);
      const tricks = {
        'cache-control': 'no-cache',
        pragma: 'no-cache',
        'idempotent-replayed': 'false',
        'x-idempotency-skip': 'true',
        'x-http-method-override': 'GET',
      };
      const again = await send(url('/orders'), { key, body: {}, headers: tricks });
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(app.calls.get('orders')).toBe(1);
    });

    it('answers 503 problem+json within `storeTimeoutMs` when the store hangs (fail-closed)', async () => {
      const bus = createBus();
      const errors: EventOf<'idempotency.storeError'>[] = [];
      bus.on('idempotency.storeError', (e) => errors.push(e));
      const { app, url } = await start({ store: hungStore, storeTimeoutMs: 100, bus });
      const res = await send(url('/orders'), { key: newKey(), body: {} });
      expectProblem(res, 503, problemTypes.storeUnavailable);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(app.calls.get('orders')).toBeUndefined();
      expect(errors[0]).toMatchObject({ operation: 'claim', code: 'E_STORE_UNAVAILABLE', failOpen: false });
    });

    it('frees a key whose claim succeeded only after the store timeout', async () => {
      const inner = await stores.make();
      let slow = true;
      let released = 0;
      const store: IdempotencyStore = {
        claim: async (...args) => {
          if (slow) await new Promise((r) => setTimeout(r, 300));
          return inner.claim(...args);
        },
        complete: (...args) => inner.complete(...args),
        release: async (...args) => {
          const done = await inner.release(...args);
          released++;
          return done;
        },
      };
      const { app, url } = await start({ store, storeTimeoutMs: 100 });
      const key = newKey();
      expectProblem(await send(url('/orders'), { key, body: {} }), 503, problemTypes.storeUnavailable);
      slow = false;
      // The late claim lands at 300 ms and is released; without that, the key would stay claimed for a
      // lease. Waits for the release itself (bounded), not 450 ms: on a loaded machine the claim's
      // 300 ms timer and the store's round trip can end later than that.
      await eventually(() => released === 1, 100).catch(() => {});
      const retry = await send(url('/orders'), { key, body: {} });
      expect(retry.status).toBe(201);
      expect(app.calls.get('orders')).toBe(1);
    });

    it('answers 503 when the store fails at once (fail-closed)', async () => {
      const { app, url } = await start({ store: brokenStore });
      expectProblem(await send(url('/orders'), { key: newKey(), body: {} }), 503, problemTypes.storeUnavailable);
      expect(app.calls.get('orders')).toBeUndefined();
    });

    it('passes requests through when the store is down and `onStoreError` is fail-open', async () => {
      const { app, url } = await start({ store: hungStore, storeTimeoutMs: 100, onStoreError: 'fail-open' });
      const key = newKey();
      expect((await send(url('/orders'), { key, body: {} })).status).toBe(201);
      expect((await send(url('/orders'), { key, body: {} })).status).toBe(201);
      expect(app.calls.get('orders')).toBe(2);
    });

    it('delivers the response within `completeTimeoutMs` when storing it hangs', async () => {
      const inner = await stores.make();
      const store: IdempotencyStore = { ...hungStore, claim: (...args) => inner.claim(...args) };
      // The claim is the real store's: 1 s for it on a loaded machine (100 ms answered 503 at load 17).
      const { app, url } = await start({ store, storeTimeoutMs: 1_000, completeTimeoutMs: 300 });
      const res = await send(url('/orders'), { key: newKey(), body: { a: 1 } });
      expect(res.status).toBe(201);
      expect(res.json()).toMatchObject({ n: 1, body: { a: 1 } });
      expect(app.calls.get('orders')).toBe(1);
    });
  });
}

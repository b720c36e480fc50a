import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Bus, createBus, ManualClock } from '@holdfast/core';
import express from 'express';
import fc from 'fast-check';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency as expressIdempotency } from '../src/express.js';
import { idempotency as fastifyIdempotency } from '../src/fastify.js';
import { type Decision, HttpIdempotency, type HttpIdempotencyOptions, type RequestView } from '../src/http/index.js';
import { type IdempotencyStore, MemoryStore, memoryStore } from '../src/index.js';
import { inProcess } from '../src/memory-store.js';
import { expressFramework, fastifyFramework } from './http-support/apps.js';
import { closeAll, closers, listenNode } from './http-support/body-apps.js';
import { newKey, send, spy } from './http-support/support.js';

// Hostile tests of the in-process store's path without promises (engine decideNow, settle
// through the store's calls under Symbol.for('holdfast.idempotency.memoryStore.now.v1'), Run.atOnce,
// replays that share the store's record): each checks a guarantee a user would, and the async
// path (the same store behind a wrapper) must answer the same.

afterEach(closeAll);

type Event = { type: string } & Record<string, unknown>;

function recorder(): { bus: Bus; events: Event[]; of(type: string): Event[] } {
  const bus = createBus();
  const events: Event[] = [];
  bus.on('*', (e) => {
    events.push(e as unknown as Event);
  });
  return { bus, events, of: (type) => events.filter((e) => e.type === `idempotency.${type}`) };
}

function view(key: string | undefined, body = '{"n":1}', method = 'POST'): RequestView {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== undefined) headers['idempotency-key'] = key;
  return { method, url: '/orders', headers, body: Buffer.from(body) };
}

function core(store: IdempotencyStore, options: Partial<HttpIdempotencyOptions<unknown>> = {}) {
  const { bus, events, of } = recorder();
  const clock = new ManualClock(1_000_000);
  const c = new HttpIdempotency<unknown>('test', { store, scope: 'global', bus, clock, ...options });
  return { core: c, events, of, clock };
}

async function decide(c: HttpIdempotency<unknown>, v: RequestView): Promise<Decision> {
  return await c.decideNow({}, v);
}

async function runAndFinish(
  c: HttpIdempotency<unknown>,
  v: RequestView,
  status: number,
  headers: Record<string, string | string[]>,
  body: string,
): Promise<void> {
  const d = await decide(c, v);
  if (d.action !== 'run') throw new Error(`expected a run, got ${d.action}`);
  d.run.body.add(body);
  await d.run.finish(status, headers);
}

describe('a replay shares nothing with the record it came from', () => {
  for (const [name, make] of [
    ['memoryStore (no promise)', () => memoryStore()],
    ['spy(memoryStore()) (async)', () => spy(memoryStore())],
  ] as const) {
    it(`${name}: changing a replay's body bytes or header lists changes no later replay`, async () => {
      const { core: c } = core(make(), { replayHeaders: ['link'] });
      const key = newKey();
      await runAndFinish(
        c,
        view(key),
        201,
        { 'content-type': 'application/json', link: ['</a>; rel="a"', '</b>; rel="b"'] },
        '{"id":"order-1"}',
      );
      const first = await decide(c, view(key));
      if (first.action !== 'respond') throw new Error('expected a replay');
      // What a later layer may do to a response it was handed: redact its bytes in place, add a link.
      first.response.body.fill(0x58);
      (first.response.headers.link as string[]).push('</evil>; rel="evil"');
      (first.response.headers as Record<string, unknown>)['content-type'] = 'text/evil';
      const second = await decide(c, view(key));
      if (second.action !== 'respond') throw new Error('expected a replay');
      expect(second.response.body.toString()).toBe('{"id":"order-1"}');
      expect(second.response.headers.link).toEqual(['</a>; rel="a"', '</b>; rel="b"']);
      expect(second.response.headers['content-type']).toBe('application/json');
    });

    it(`${name}: a handler that changes its buffers or header list after sending changes no replay`, async () => {
      const { core: c } = core(make(), { replayHeaders: ['link'] });
      const key = newKey();
      const d = await decide(c, view(key));
      if (d.action !== 'run') throw new Error('expected a run');
      // One chunk alone (the record may keep it as it is), and a view into a larger buffer.
      const whole = Buffer.from('{"id":"order-1"}');
      d.run.body.add(whole);
      await d.run.finish(201, { 'content-type': 'application/json', link: ['</a>; rel="a"'] });
      const split = await decide(c, view(newKey()));
      if (split.action !== 'run') throw new Error('expected a run');
      const pool = Buffer.from('xx{"id":"order-2"}yy');
      const link = ['</b>; rel="b"'];
      const headers: Record<string, string | string[]> = { 'content-type': 'application/json', link };
      split.run.body.add(new Uint8Array(pool.buffer, pool.byteOffset + 2, 8));
      split.run.body.add(pool.subarray(10, 18));
      await split.run.finish(201, headers);
      // What a handler may do once write() returned: reuse its buffers, change its header objects.
      whole.fill(0x58);
      pool.fill(0x58);
      link.push('</evil>; rel="evil"');
      headers['content-type'] = 'text/evil';
      const first = await decide(c, view(key));
      if (first.action !== 'respond') throw new Error('expected a replay');
      expect(first.response.body.toString()).toBe('{"id":"order-1"}');
      expect(first.response.headers.link).toEqual(['</a>; rel="a"']);
      const second = await decide(c, view(split.run.key));
      if (second.action !== 'respond') throw new Error('expected a replay');
      expect(second.response.body.toString()).toBe('{"id":"order-2"}');
      expect(second.response.headers.link).toEqual(['</b>; rel="b"']);
      expect(second.response.headers['content-type']).toBe('application/json');
    });
  }

  it('Fastify: an onSend hook that rewrites a replay payload in place changes no later replay', async () => {
    const store = memoryStore();
    const app = Fastify();
    await app.register(fastifyIdempotency, { store, scope: 'global', replayHeaders: ['link'] });
    let calls = 0;
    app.post('/orders', (_req, reply) => {
      calls++;
      reply
        .code(201)
        .header('link', ['</a>; rel="a"', '</b>; rel="b"'])
        // Not one of Fastify's default types: a replay of it is sent as a Buffer (one of those,
        // as a string: fastify-early-replay.test.ts), which this hook rewrites in place.
        .type('application/vnd.api+json')
        .send('{"secret":"abc"}');
    });
    // A redaction hook, registered after the plugin, that works on the bytes it is handed.
    app.addHook('onSend', (_req, reply, payload, done) => {
      if (Buffer.isBuffer(payload)) for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ 0x20;
      const link = reply.getHeader('link');
      if (Array.isArray(link)) link.push('</hook>; rel="hook"');
      done(null, payload);
    });
    const url = await listen(app);
    const key = newKey();
    const first = await send(url, { key, body: { n: 1 } });
    expect(first.status).toBe(201);
    const replays = [];
    for (let i = 0; i < 3; i++) replays.push(await send(url, { key, body: { n: 1 } }));
    expect(calls).toBe(1);
    // The hook ran on each replay's own copy: each replay is the stored response, flipped once.
    const flipped = Buffer.from('{"secret":"abc"}').map((b) => b ^ 0x20);
    for (const r of replays) {
      expect(r.headers.get('idempotent-replayed')).toBe('true');
      expect(r.bytes.equals(Buffer.from(flipped))).toBe(true);
      expect(r.headers.get('link')).toBe('</a>; rel="a", </b>; rel="b", </hook>; rel="hook"');
    }
  });
});

describe('a listener that throws on the path without promises', () => {
  it('breaks no decision and leaves no key claimed', async () => {
    const bus = createBus({ onListenerError: () => {} });
    for (const type of [
      'idempotency.claim',
      'idempotency.replay',
      'idempotency.conflict',
      'idempotency.release',
    ] as const) {
      bus.on(type, () => {
        throw new Error(`listener of ${type}`);
      });
    }
    const c = new HttpIdempotency<unknown>('test', { store: memoryStore(), scope: 'global', bus });
    const run = await decide(c, view('t'));
    expect(run.action).toBe('run');
    expect(observe(await decide(c, view('t')))).toMatchObject({ status: 409 });
    if (run.action !== 'run') throw new Error('expected a run');
    await run.run.finish(500, {});
    const again = await decide(c, view('t'));
    expect(again.action).toBe('run');
    if (again.action !== 'run') throw new Error('expected a run');
    again.run.body.add('ok');
    await again.run.finish(201, {});
    expect(observe(await decide(c, view('t')))).toMatchObject({ status: 201, body: 'ok' });
  });
});

describe('a problem response shares nothing with the next one', () => {
  it('changing the bytes of a 409 or 422 in place changes no later 409 or 422', async () => {
    const { core: c } = core(memoryStore());
    const run = await decide(c, view('p'));
    expect(run.action).toBe('run');
    const seen: string[] = [];
    for (let i = 0; i < 2; i++) {
      for (const d of [await decide(c, view('p')), await decide(c, view('p', '{"other":true}'))]) {
        if (d.action !== 'respond') throw new Error('expected a problem');
        seen.push(`${d.response.status} ${d.response.body.toString()}`);
        d.response.body.fill(0x21);
      }
    }
    expect(seen[2]).toBe(seen[0]);
    expect(seen[3]).toBe(seen[1]);
    expect(seen[0]).toMatch(/^409 \{"type":"urn:holdfast:problem:/);
  });
});

async function listen(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  closers.push(() => app.close());
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/orders`;
}

async function listenExpress(app: express.Express, path = '/orders'): Promise<string> {
  const port = await listenNode(createServer(app));
  return `http://127.0.0.1:${port}${path}`;
}

/** What a user can observe of one step: the decision, and the events it fired (time left out). */
function observe(d: Decision): unknown {
  if (d.action !== 'respond') return d.action;
  const { status, headers, body } = d.response;
  return { status, headers: { ...headers }, body: body.toString() };
}

function eventsSince(events: Event[], from: number): unknown[] {
  return events.slice(from).map(({ time: _time, source: _source, ...rest }) => rest);
}

const paths = (make: () => MemoryStore) =>
  [
    ['memoryStore (no promise)', () => make()],
    ['spy(memoryStore()) (async)', () => spy(make())],
  ] as const;

describe('a store that refuses: the path without promises answers as the async one', () => {
  it('a record over maxBytes frees its key (a retry runs again), one storeError, one release', async () => {
    const seen: unknown[] = [];
    for (const [, make] of paths(() => memoryStore({ maxBytes: 2_000 }))) {
      const { core: c, events } = core(make());
      const key = 'too-large';
      const d = await decide(c, view(key));
      if (d.action !== 'run') throw new Error('expected a run');
      expect(d.run.atOnce).toBe(inProcess(c.store) !== undefined);
      d.run.body.add('x'.repeat(3_000));
      const settled = d.run.finish(201, { 'content-type': 'text/plain' });
      // No macrotask: a retry read off the socket comes after these microtasks.
      await Promise.resolve();
      await settled;
      const retry = await decide(c, view(key));
      expect(retry.action).toBe('run');
      seen.push(eventsSince(events, 0));
    }
    expect(seen[0]).toEqual(seen[1]);
    expect(seen[0]).toEqual([
      { type: 'idempotency.claim', key: 'too-large', takeover: false },
      {
        type: 'idempotency.storeError',
        key: 'too-large',
        operation: 'complete',
        code: 'E_IDEMPOTENCY_VALUE',
        failOpen: true,
      },
      { type: 'idempotency.release', key: 'too-large', code: 'E_IDEMPOTENCY_VALUE' },
      { type: 'idempotency.claim', key: 'too-large', takeover: false },
    ]);
  });

  it('a store disposed mid-request: the response settles, one storeError, then 503 or pass', async () => {
    for (const onStoreError of ['fail-closed', 'fail-open'] as const) {
      const seen: unknown[][] = [];
      for (const wrap of [false, true]) {
        const inner = memoryStore();
        const { core: c, events } = core(wrap ? spy(inner) : inner, { onStoreError });
        const d = await decide(c, view('k'));
        if (d.action !== 'run') throw new Error('expected a run');
        inner.dispose();
        d.run.body.add('done');
        await d.run.finish(201, {});
        const after = observe(await decide(c, view('k')));
        seen.push([after, eventsSince(events, 0)]);
      }
      expect(seen[0]).toEqual(seen[1]);
      const [after, evs] = seen[0] as [unknown, unknown[]];
      if (onStoreError === 'fail-closed') expect(after).toMatchObject({ status: 503 });
      else expect(after).toBe('pass');
      expect(evs).toEqual([
        { type: 'idempotency.claim', key: 'k', takeover: false },
        { type: 'idempotency.storeError', key: 'k', operation: 'complete', code: 'E_DISPOSED', failOpen: true },
        {
          type: 'idempotency.storeError',
          key: 'k',
          operation: 'claim',
          code: 'E_DISPOSED',
          failOpen: onStoreError === 'fail-open',
        },
      ]);
    }
  });

  it('a store full of running claims: 503 (or pass when fail-open), one storeError; a finished one frees room', async () => {
    for (const onStoreError of ['fail-closed', 'fail-open'] as const) {
      const seen: unknown[][] = [];
      for (const [, make] of paths(() => memoryStore({ maxEntries: 2 }))) {
        const { core: c, events } = core(make(), { onStoreError });
        const a = await decide(c, view('a'));
        const b = await decide(c, view('b'));
        const full = observe(await decide(c, view('c')));
        if (a.action !== 'run' || b.action !== 'run') throw new Error('expected runs');
        a.run.body.add('A');
        await a.run.finish(201, {});
        const room = observe(await decide(c, view('c')));
        const replayA = observe(await decide(c, view('a')));
        seen.push([full, room, replayA, eventsSince(events, 0)]);
      }
      expect(seen[0]).toEqual(seen[1]);
      const [full, room, replayA, evs] = seen[0] as [unknown, unknown, unknown, Event[]];
      if (onStoreError === 'fail-closed') expect(full).toMatchObject({ status: 503 });
      else expect(full).toBe('pass');
      // 'a' completed: evicted to make room for 'c'; then 'b' and 'c' run, and 'a' finds no room.
      expect(room).toBe('run');
      expect(replayA).toEqual(full);
      const errors = evs.filter((e) => e.type === 'idempotency.storeError');
      const failOpen = onStoreError === 'fail-open';
      expect(errors).toEqual([
        { type: 'idempotency.storeError', key: 'c', operation: 'claim', code: 'E_STORE_UNAVAILABLE', failOpen },
        { type: 'idempotency.storeError', key: 'a', operation: 'claim', code: 'E_STORE_UNAVAILABLE', failOpen },
      ]);
    }
  });
});

describe('stores whose methods are not the class own', () => {
  it('a subclass that overrides claim, complete and release is called through them', async () => {
    const calls: string[] = [];
    class Audited extends MemoryStore {
      override async claim(...args: Parameters<MemoryStore['claim']>) {
        calls.push('claim');
        return super.claim(...args);
      }
      override async complete(...args: Parameters<MemoryStore['complete']>) {
        calls.push('complete');
        return super.complete(...args);
      }
      override async release(...args: Parameters<MemoryStore['release']>) {
        calls.push('release');
        return super.release(...args);
      }
    }
    const { core: c } = core(new Audited(100, 60_000, new ManualClock(0)));
    await runAndFinish(c, view('a'), 201, {}, 'ok');
    const d = await decide(c, view('b'));
    if (d.action !== 'run') throw new Error('expected a run');
    await d.run.finish(500, {});
    expect(await decide(c, view('a'))).toMatchObject({ action: 'respond' });
    expect(calls).toEqual(['claim', 'complete', 'claim', 'release', 'claim']);
  });

  it('a store patched after the middleware was made (a spy, a chaos wrapper) is called through its patch', async () => {
    const store = memoryStore();
    const { core: c } = core(store);
    const calls: string[] = [];
    const claim = store.claim.bind(store);
    const complete = store.complete.bind(store);
    store.claim = (...args) => {
      calls.push('claim');
      return claim(...args);
    };
    store.complete = (...args) => {
      calls.push('complete');
      return complete(...args);
    };
    await runAndFinish(c, view('a'), 201, {}, 'ok');
    expect(calls).toEqual(['claim', 'complete']);
    // A patch that fails every claim (an outage drill) is what the middleware sees.
    store.claim = async () => {
      throw Object.assign(new Error('drill'), { code: 'ECONNREFUSED' });
    };
    expect(observe(await decide(c, view('a')))).toMatchObject({ status: 503 });
  });

  it('a MemoryStore from another copy of the module takes the path without promises, and replays safely', async () => {
    const another = '../src/memory-store.js?sync-path-hostile';
    const copy = (await import(/* @vite-ignore */ another)) as typeof import('../src/memory-store.js');
    expect(copy.MemoryStore).not.toBe(MemoryStore);
    const { core: c } = core(copy.memoryStore());
    await runAndFinish(c, view('a'), 201, { 'content-type': 'text/plain' }, 'ok');
    // decideNow answers without a promise: the copy's calls were taken.
    const replay = c.decideNow({}, view('a'));
    expect(replay).not.toBeInstanceOf(Promise);
    if (replay instanceof Promise || replay.action !== 'respond') throw new Error('expected a replay');
    replay.response.body.fill(0);
    expect(observe(c.decideNow({}, view('a')) as Decision)).toMatchObject({ status: 201, body: 'ok' });
  });
});

describe('the wait option on the path without promises', () => {
  it('a request that finds the key running waits, then gets the replay (one run, waited conflict none)', async () => {
    const { bus, of } = recorder();
    const c = new HttpIdempotency<unknown>('test', {
      store: memoryStore(),
      scope: 'global',
      bus,
      wait: { timeout: 2_000, interval: 10 },
    });
    const first = await decide(c, view('w'));
    if (first.action !== 'run') throw new Error('expected a run');
    const waiting = decide(c, view('w'));
    await new Promise((r) => setTimeout(r, 30));
    first.run.body.add('done');
    await first.run.finish(201, { 'content-type': 'text/plain' });
    expect(observe(await waiting)).toMatchObject({ status: 201, body: 'done' });
    expect(of('claim')).toHaveLength(1);
    expect(of('replay')).toHaveLength(1);
    expect(of('conflict')).toHaveLength(0);
  });

  it('a wait that times out is one conflict with waited: true', async () => {
    const { bus, of } = recorder();
    const c = new HttpIdempotency<unknown>('test', {
      store: memoryStore(),
      scope: 'global',
      bus,
      wait: { timeout: 40, interval: 10 },
    });
    const first = await decide(c, view('w'));
    expect(first.action).toBe('run');
    expect(observe(await decide(c, view('w')))).toMatchObject({ status: 409 });
    expect(of('conflict').map((e) => e.waited)).toEqual([true]);
  });
});

describe.each([expressFramework, fastifyFramework])('over real HTTP, $name, on memoryStore()', (framework) => {
  async function start(options: Parameters<typeof framework.start>[0]) {
    const app = await framework.start(options);
    closers.push(() => app.close());
    return app;
  }

  it('40 concurrent requests with one key: exactly one run, the rest 409 or the replay', async () => {
    const app = await start({ store: memoryStore() });
    const key = newKey();
    const all = await Promise.all(
      Array.from({ length: 40 }, () => send(`${app.url}/orders`, { key, body: { amount: 5 } })),
    );
    expect(app.calls.get('orders')).toBe(1);
    const ran = all.filter((r) => r.status === 201 && r.headers.get('idempotent-replayed') === null);
    expect(ran).toHaveLength(1);
    for (const r of all) {
      if (r === ran[0]) continue;
      if (r.status === 409) continue;
      expect(r.status).toBe(201);
      expect(r.headers.get('idempotent-replayed')).toBe('true');
      expect(r.text).toBe(ran[0]?.text);
    }
  });

  it('a retry sent the moment a response arrives gets the replay, 50 times in a row', async () => {
    const app = await start({ store: memoryStore() });
    for (let i = 0; i < 50; i++) {
      const key = newKey();
      const first = await send(`${app.url}/orders`, { key, body: { i } });
      const retry = await send(`${app.url}/orders`, { key, body: { i } });
      expect(first.status).toBe(201);
      expect([retry.status, retry.headers.get('idempotent-replayed'), retry.text]).toEqual([201, 'true', first.text]);
    }
    expect(app.calls.get('orders')).toBe(50);
  });

  it('a response over the store maxBytes frees its key before a retry sent on receipt is read', async () => {
    const { bus, of } = recorder();
    const app = await start({ store: memoryStore({ maxBytes: 3_000 }), bus });
    for (let i = 0; i < 10; i++) {
      const key = newKey();
      const first = await send(`${app.url}/big`, { key, body: { i } });
      const retry = await send(`${app.url}/big`, { key, body: { i } });
      expect([first.status, retry.status]).toEqual([200, 200]);
      expect(retry.headers.get('idempotent-replayed')).toBeNull();
    }
    expect(app.calls.get('big')).toBe(20);
    expect(of('release').map((e) => e.code)).toEqual(Array(20).fill('E_IDEMPOTENCY_VALUE'));
    expect(of('storeError').map((e) => e.operation)).toEqual(Array(20).fill('complete'));
    expect(of('claim')).toHaveLength(20);
  });

  it('scope: one key, two accounts, two runs; each replays only its own response', async () => {
    const app = await start({ store: memoryStore(), scoped: true });
    const key = newKey();
    const a = await send(`${app.url}/orders`, { key, body: { x: 1 }, headers: { 'x-account': 'alice' } });
    const b = await send(`${app.url}/orders`, { key, body: { x: 1 }, headers: { 'x-account': 'bob' } });
    expect(app.calls.get('orders')).toBe(2);
    expect(a.text).not.toBe(b.text);
    const a2 = await send(`${app.url}/orders`, { key, body: { x: 1 }, headers: { 'x-account': 'alice' } });
    const b2 = await send(`${app.url}/orders`, { key, body: { x: 1 }, headers: { 'x-account': 'bob' } });
    expect([a2.text, b2.text]).toEqual([a.text, b.text]);
    expect(a2.headers.get('set-cookie')).toBeNull();
  });

  it('wait: a request that finds the key running waits for it and gets the replay', async () => {
    const { bus, of } = recorder();
    const app = await start({ store: memoryStore(), bus, wait: { timeout: 5_000, interval: 10 } });
    const key = newKey();
    const first = send(`${app.url}/slow`, { key, body: {} });
    while (app.gate.entered === 0) await new Promise((r) => setTimeout(r, 5));
    const waiting = send(`${app.url}/slow`, { key, body: {} });
    await new Promise((r) => setTimeout(r, 50));
    app.gate.open();
    const [a, b] = await Promise.all([first, waiting]);
    expect(app.calls.get('slow')).toBe(1);
    expect([b.status, b.headers.get('idempotent-replayed'), b.text]).toEqual([a.status, 'true', a.text]);
    expect(of('conflict')).toEqual([]);
    expect(of('replay')).toHaveLength(1);
  });

  it('events: one claim, one replay, one conflict each, with the key', async () => {
    const { bus, of } = recorder();
    const app = await start({ store: memoryStore(), bus });
    const key = newKey();
    const slow = send(`${app.url}/slow`, { key, body: {} });
    while (app.gate.entered === 0) await new Promise((r) => setTimeout(r, 5));
    const conflict = await send(`${app.url}/slow`, { key, body: {} });
    app.gate.open();
    await slow;
    const replay = await send(`${app.url}/slow`, { key, body: {} });
    expect([conflict.status, replay.headers.get('idempotent-replayed')]).toEqual([409, 'true']);
    expect(of('claim').map((e) => [e.key, e.takeover])).toEqual([[key, false]]);
    expect(of('conflict').map((e) => [e.key, e.waited])).toEqual([[key, false]]);
    expect(of('replay').map((e) => e.key)).toEqual([key]);
    expect(of('release')).toEqual([]);
    expect(of('storeError')).toEqual([]);
  });
});

describe('Fastify: routes the plugin does not guard, or guards differently', () => {
  it('config false, GET, HEAD and 404s pass untouched with a key (no claim); a per-route option applies', async () => {
    const { bus, events } = recorder();
    const app = Fastify();
    await app.register(fastifyIdempotency, { store: memoryStore(), scope: 'global', bus });
    const calls = new Map<string, number>();
    const hit = (name: string) => calls.set(name, (calls.get(name) ?? 0) + 1);
    app.post('/off', { config: { idempotency: false } }, async () => {
      hit('off');
      return { n: calls.get('off') };
    });
    app.get('/orders', async () => {
      hit('get');
      return { n: calls.get('get') };
    });
    app.post('/strict', { config: { idempotency: { required: true } } }, async () => {
      hit('strict');
      return { n: calls.get('strict') };
    });
    app.post('/orders', async (_req, reply) => {
      hit('post');
      return reply.code(201).send({ n: calls.get('post') });
    });
    const url = await listen(app);
    const base = url.replace(/\/orders$/, '');
    const key = newKey();
    for (let i = 0; i < 2; i++) {
      expect((await send(`${base}/off`, { key, body: {} })).json()).toEqual({ n: i + 1 });
      expect((await send(`${base}/orders`, { key, method: 'GET' })).json()).toEqual({ n: 2 * i + 1 });
      const head = await send(`${base}/orders`, { key, method: 'HEAD' });
      expect(head.status).toBe(200);
      expect((await send(`${base}/nowhere`, { key, body: {} })).status).toBe(404);
    }
    expect(calls.get('get')).toBe(4); // HEAD runs the GET handler too
    expect(events).toEqual([]);
    // The per-route option: a key is required there, and nowhere else.
    const missing = await send(`${base}/strict`, { body: {} });
    expect(missing.status).toBe(400);
    expect((await send(`${base}/orders`, { body: {} })).status).toBe(201);
    expect(calls.get('strict')).toBeUndefined();
    // And the same key, used now on a guarded route, is claimed there for the first time.
    const posted = await send(`${base}/orders`, { key, body: {} });
    const again = await send(`${base}/orders`, { key, body: {} });
    expect([posted.status, again.headers.get('idempotent-replayed'), again.text]).toEqual([201, 'true', posted.text]);
    expect(events.filter((e) => e.type === 'idempotency.claim')).toHaveLength(1);
  });
});

describe('Express: a mounted sub-app', () => {
  it('replays through a sub-app, retry on receipt; a path the sub-app does not serve frees its key', async () => {
    const { bus, of } = recorder();
    const app = express();
    const api = express();
    let calls = 0;
    api.post('/orders', express.json(), (req, res) => {
      calls++;
      res.status(201).set('link', '</orders>; rel="collection"').json({ n: calls, body: req.body });
    });
    app.use(expressIdempotency({ store: memoryStore(), scope: 'global', bus }));
    app.use('/api', api);
    const url = await listenExpress(app, '/api/orders');
    for (let i = 0; i < 20; i++) {
      const key = newKey();
      const first = await send(url, { key, body: { i } });
      const retry = await send(url, { key, body: { i } });
      expect([first.status, retry.status, retry.headers.get('idempotent-replayed'), retry.text]).toEqual([
        201,
        201,
        'true',
        first.text,
      ]);
    }
    expect(calls).toBe(20);
    const key = newKey();
    const missing = url.replace('/orders', '/nothing');
    expect((await send(missing, { key, body: {} })).status).toBe(404);
    expect((await send(missing, { key, body: {} })).status).toBe(404);
    expect(of('release').map((e) => [e.key, e.code])).toEqual([
      [key, 'HTTP_404'],
      [key, 'HTTP_404'],
    ]);
  });
});

describe('property: the path without promises decides as the async path', () => {
  type Cmd =
    | { t: 'decide'; key: number; body: number; user: number }
    | { t: 'finish'; idx: number; status: number; size: number }
    | { t: 'abandon'; idx: number }
    | { t: 'advance'; ms: number };
  const cmd: fc.Arbitrary<Cmd> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ t: fc.constant('decide' as const), key: fc.nat(2), body: fc.nat(1), user: fc.nat(1) }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        t: fc.constant('finish' as const),
        idx: fc.nat(5),
        status: fc.constantFrom(200, 201, 204, 500),
        size: fc.constantFrom(0, 10, 900, 3_000),
      }),
    },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('abandon' as const), idx: fc.nat(5) }) },
    {
      weight: 1,
      arbitrary: fc.record({ t: fc.constant('advance' as const), ms: fc.constantFrom(0, 400, 1_001, 6_000) }),
    },
  );

  async function play(cmds: readonly Cmd[], wrap: boolean, scoped: boolean): Promise<unknown[]> {
    const clock = new ManualClock(1_000_000);
    const inner = memoryStore({ clock, maxEntries: 3, maxBytes: 2_500 });
    const { bus, events } = recorder();
    const c = new HttpIdempotency<{ user: string }>('test', {
      store: wrap ? spy(inner) : inner,
      scope: scoped ? (req) => req.user : 'global',
      bus,
      clock,
      leaseMs: 1_000,
      ttlMs: 5_000,
      replayHeaders: ['link'],
    });
    const runs: Extract<Decision, { action: 'run' }>['run'][] = [];
    const log: unknown[] = [];
    let n = 0;
    for (const step of cmds) {
      const from = events.length;
      if (step.t === 'decide') {
        const d = await c.decideNow({ user: `u${step.user}` }, view(`k${step.key}`, `{"b":${step.body}}`));
        if (d.action === 'run') runs.push(d.run);
        log.push(observe(d));
        // Whatever a later layer does to a replay must not reach the record.
        if (d.action === 'respond') {
          d.response.body.fill(0x21);
          const link = d.response.headers.link;
          if (Array.isArray(link)) (link as string[]).push('changed');
        }
      } else if (step.t === 'finish' || step.t === 'abandon') {
        const run = runs.splice(step.idx % Math.max(1, runs.length), 1)[0];
        if (run === undefined) continue;
        if (step.t === 'abandon') await run.abandon('E_TEST');
        else {
          n++;
          if (step.size > 0) run.body.add(`${n}:`.padEnd(step.size, 'x'));
          await run.finish(step.status, { 'content-type': 'text/plain', link: [`<${n}>`, '<x>'], 'set-cookie': 's=1' });
        }
      } else await clock.advance(step.ms);
      log.push(eventsSince(events, from), inner.snapshot());
    }
    return log;
  }

  it('same decisions, events and store state for any sequence of requests', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(cmd, { minLength: 1, maxLength: 40 }), fc.boolean(), async (cmds, scoped) => {
        expect(await play(cmds, false, scoped)).toEqual(await play(cmds, true, scoped));
      }),
      { numRuns: 300 },
    );
  });
});

describe('replayOf', () => {
  it('keeps a stored header named __proto__ a header, on both paths', async () => {
    const { replayOf } = await import('../src/http/capture.js');
    const { copyHeaders } = await import('../src/store.js');
    const stored = {
      kind: 'response' as const,
      status: 200,
      headers: copyHeaders(JSON.parse('{"__proto__":"kept","link":["<a>","<b>"]}')),
      body: Buffer.from('ok'),
    };
    for (const shared of [true, false]) {
      const replay = replayOf(stored, shared);
      expect(Object.hasOwn(replay.headers, '__proto__')).toBe(true);
      expect(Object.getOwnPropertyDescriptor(replay.headers, '__proto__')?.value).toBe('kept');
      expect(Object.getPrototypeOf(replay.headers)).toBe(Object.prototype);
      expect(replay.headers.link).toEqual(['<a>', '<b>']);
      expect(replay.headers.link).not.toBe(stored.headers.link);
    }
  });
});

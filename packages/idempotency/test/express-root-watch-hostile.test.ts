import { spawnSync } from 'node:child_process';
import { createServer, IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { type IdempotencyStore, memoryStore } from '../src/index.js';
import { closeAll, expressApp, listenNode } from './http-support/body-apps.js';
import { exchange, finals, head, json, keyed, within } from './http-support/raw.js';
import { newKey } from './http-support/support.js';

// Hostile review of the watch through Express's request object (1e034bd): the request's root
// prototype gets `push` and `_destroy` that feed a watch kept in a WeakMap. Production setups
// where that differs from watching the request itself: a hang, a handler run twice, a wrong
// fingerprint, a key held, state kept.

afterEach(closeAll);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A keyed POST as one buffer. */
const request = (key: string, body: Buffer, path = '/orders', extra: string[] = []) =>
  Buffer.concat([Buffer.from(head(path, [...keyed(key), ...extra], body.length)), body]);

describe('a layer before ours that overrides push or _destroy between the request and its root', () => {
  it('push set on the app’s request object (not on the request itself): still answered, run once', async () => {
    let pushes = 0;
    const app = await expressApp([
      (req, _res, next) => {
        const proto = Object.getPrototypeOf(req) as { push?: unknown };
        if (!Object.hasOwn(proto, 'push')) {
          // As a library extending app.request would: calls Node's push, not whatever the chain had.
          proto.push = function (this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding) {
            pushes++;
            return IncomingMessage.prototype.push.call(this, chunk, encoding);
          };
        }
        next();
      },
    ]);
    const key = newKey();
    const body = json({ amount: 7 });
    const first = finals(await exchange(app.port, [request(key, body)], { count: 1, ms: 1500 }));
    expect(first.map((r) => r.status)).toEqual([201]);
    const again = finals(await exchange(app.port, [request(key, body)], { count: 1, ms: 1500 }));
    expect(again[0]?.body).toBe(first[0]?.body);
    expect(app.calls()).toBe(1);
    expect(pushes).toBeGreaterThan(0);
  });

  it('push replaced on the root itself after ours was put there: still answered, run once', async () => {
    const app = await expressApp();
    const key = newKey();
    const body = json({ amount: 8 });
    // A first request puts our push on the root (Express's request object).
    const warm = finals(await exchange(app.port, [request(newKey(), body)], { count: 1 }));
    expect(warm.map((r) => r.status)).toEqual([201]);
    const root = Object.getPrototypeOf(express.request) === IncomingMessage.prototype ? express.request : undefined;
    expect(root).toBeDefined();
    const saved = Object.getOwnPropertyDescriptor(root, 'push');
    (root as { push: unknown }).push = function (this: IncomingMessage, chunk: unknown, encoding?: BufferEncoding) {
      return IncomingMessage.prototype.push.call(this, chunk, encoding);
    };
    try {
      const first = finals(await exchange(app.port, [request(key, body)], { count: 1, ms: 1500 }));
      expect(first.map((r) => r.status)).toEqual([201]);
      const again = finals(await exchange(app.port, [request(key, body)], { count: 1, ms: 1500 }));
      expect(again[0]?.body).toBe(first[0]?.body);
      expect(app.calls()).toBe(2);
    } finally {
      if (saved) Object.defineProperty(root, 'push', saved);
    }
  });
});

describe('two middlewares on one request', () => {
  it('app-level and router-level, each fingerprints the whole body; the handler runs once', async () => {
    let firstOn = true;
    let secondOn = true;
    const first = idempotency({ store: memoryStore(), scope: 'global' });
    const second = idempotency({ store: memoryStore(), scope: 'global' });
    const app = express();
    app.use((req, res, next) => (firstOn ? first(req, res, next) : next()));
    const router = express.Router();
    router.use((req, res, next) => (secondOn ? second(req, res, next) : next()));
    router.use(express.json());
    let calls = 0;
    router.post('/orders', (req, res) => {
      res.status(201).json({ n: ++calls, body: req.body });
    });
    app.use('/v1', router);
    const port = await listenNode(createServer(app));
    const key = newKey();
    const body = json({ amount: 1, pad: 'x'.repeat(2000) });
    const tail = json({ amount: 1, pad: `${'x'.repeat(1999)}y` });
    // Small writes: the body arrives in many pushes.
    const wire = request(key, body, '/v1/orders');
    const writes: Buffer[] = [];
    for (let i = 0; i < wire.length; i += 97) writes.push(wire.subarray(i, i + 97));
    const a = finals(await exchange(port, writes, { count: 1, ms: 3000 }));
    expect(a.map((r) => r.status)).toEqual([201]);
    expect(JSON.parse(a[0]?.body ?? '{}').body.pad).toHaveLength(2000);
    // Each alone: a changed tail is refused, the same body replays.
    for (const [f, s] of [
      [true, false],
      [false, true],
    ] as const) {
      firstOn = f;
      secondOn = s;
      const changed = finals(await exchange(port, [request(key, tail, '/v1/orders')], { count: 1 }));
      expect(changed.map((r) => r.status)).toEqual([422]);
      const same = finals(await exchange(port, [request(key, body, '/v1/orders')], { count: 1 }));
      expect(same[0]?.body).toBe(a[0]?.body);
    }
    expect(calls).toBe(1);
  });

  it('two watches at once on the same request (one falls back to its own push): both whole, one run', async () => {
    const stores = [memoryStore(), memoryStore()];
    const mws = stores.map((store) => idempotency({ store, scope: 'global' }));
    let calls = 0;
    const app = express();
    // Both middlewares start before either got the body (a combinator running them side by side).
    app.use((req, res, next) => {
      let waiting = 2;
      const one = (error?: unknown) => {
        if (error) return next(error);
        if (--waiting === 0) next();
      };
      for (const mw of mws) mw(req, res, one);
    });
    app.use(express.json());
    app.post('/orders', (req, res) => {
      res.status(201).json({ n: ++calls, body: req.body });
    });
    const port = await listenNode(createServer(app));
    const key = newKey();
    const body = json({ amount: 2, pad: 'z'.repeat(3000) });
    const wire = request(key, body);
    const at = wire.length - body.length;
    const a = finals(await exchange(port, [wire.subarray(0, at + 10), wire.subarray(at + 10)], { count: 1, gap: 20 }));
    expect(a.map((r) => r.status)).toEqual([201]);
    expect(JSON.parse(a[0]?.body ?? '{}').body.pad).toHaveLength(3000);
    expect(calls).toBe(1);
  });
});

describe('apps and sub-apps', () => {
  it('an app called as a function by a router (no mount event), inside an outer app without the middleware', async () => {
    const inner = express();
    let calls = 0;
    inner.use(idempotency({ store: memoryStore(), scope: 'global' }));
    inner.use(express.json());
    inner.post('/orders', (req, res) => {
      res.status(201).json({ n: ++calls, body: req.body });
    });
    const outer = express();
    const router = express.Router();
    router.use((req, res, next) => inner(req, res, next));
    outer.use('/in', router);
    outer.post('/plain', express.json(), (req, res) => {
      res.json({ plain: req.body });
    });
    const port = await listenNode(createServer(outer));
    const key = newKey();
    const body = json({ amount: 3 });
    const wire = Buffer.concat([
      request(key, body, '/in/orders'),
      Buffer.from(head('/plain', ['Content-Type: application/json'], body.length)),
      body,
      request(key, body, '/in/orders'),
    ]);
    const res = finals(await exchange(port, [wire], { count: 3 }));
    expect(res.map((r) => r.status)).toEqual([201, 200, 201]);
    expect(res[2]?.body).toBe(res[0]?.body);
    expect(JSON.parse(res[1]?.body ?? '{}')).toEqual({ plain: { amount: 3 } });
    expect(calls).toBe(1);
  });
});

describe('the request is destroyed before its body came whole', () => {
  it('server.requestTimeout ends a slow body: no key held, the retry runs once', async () => {
    const app = express();
    let calls = 0;
    app.use(idempotency({ store: memoryStore(), scope: 'global' }));
    app.use(express.json());
    app.post('/orders', (req, res) => {
      res.status(201).json({ n: ++calls, body: req.body });
    });
    const server = createServer({ requestTimeout: 300, headersTimeout: 200, connectionsCheckingInterval: 50 }, app);
    const port = await listenNode(server);
    const key = newKey();
    const body = json({ amount: 4, pad: 'q'.repeat(500) });
    const wire = request(key, body);
    const cut = await exchange(port, [wire.subarray(0, wire.length - 20)], { count: 1, ms: 2000 });
    expect(cut.filter((r) => r.status < 300)).toEqual([]);
    const retry = finals(await exchange(port, [wire], { count: 1 }));
    expect(retry.map((r) => r.status)).toEqual([201]);
    expect(calls).toBe(1);
  });

  it('user code calls req.destroy() mid-body (with and without an error): no hang, no key held', async () => {
    for (const withError of [false, true]) {
      let aborted = 0;
      const app = await expressApp([
        (req, _res, next) => {
          req.on('aborted', () => aborted++);
          if (req.headers['x-cut'] !== undefined) {
            setTimeout(() => req.destroy(withError ? new Error('too slow') : undefined), 60);
          }
          next();
        },
      ]);
      const key = newKey();
      const body = json({ amount: 5 });
      const wire = request(key, body, '/orders', ['X-Cut: 1']);
      const cut = await exchange(app.port, [wire.subarray(0, wire.length - 3)], { count: 1, ms: 1000 });
      expect(cut.filter((r) => r.status < 300)).toEqual([]);
      expect(aborted).toBe(1);
      const retry = finals(await exchange(app.port, [request(key, body)], { count: 1 }));
      expect(retry.map((r) => r.status)).toEqual([201]);
      expect(app.calls()).toBe(1);
    }
  });

  it('a layer before ours replaced req._destroy: a client leaving mid-body still frees the key', async () => {
    let destroys = 0;
    const app = await expressApp([
      (req, _res, next) => {
        const own = req._destroy;
        req._destroy = function (this: IncomingMessage, error, callback) {
          destroys++;
          own.call(this, error, callback);
        };
        next();
      },
    ]);
    const key = newKey();
    const body = json({ amount: 6 });
    const wire = request(key, body);
    await exchange(app.port, [wire.subarray(0, wire.length - 4)], { count: 1, ms: 100 });
    await sleep(50);
    expect(destroys).toBe(1);
    const retry = finals(await exchange(app.port, [wire], { count: 1 }));
    expect(retry.map((r) => r.status)).toEqual([201]);
    expect(app.calls()).toBe(1);
  });

  it('a client that resets right after the last body byte: the retry runs at most once in all', async () => {
    const app = await expressApp();
    const key = newKey();
    const body = json({ amount: 8 });
    await new Promise<void>((resolve) => {
      const socket = connect(app.port, '127.0.0.1', () => {
        socket.write(request(key, body), () => {
          socket.resetAndDestroy();
          resolve();
        });
      });
      socket.on('error', () => {});
    });
    await sleep(100);
    const retry = await within(2000, exchange(app.port, [request(key, body)], { count: 1 }));
    expect(retry !== 'timeout' && finals(retry).map((r) => r.status)).toEqual([201]);
    expect(app.calls()).toBe(1);
  });
});

describe('wire shapes', () => {
  it('a body one byte a write, pipelined with a second keyed POST, then both again on one socket', async () => {
    const app = await expressApp();
    const [a, b] = [newKey(), newKey()];
    const bodyA = json({ who: 'a', pad: 'a'.repeat(200) });
    const bodyB = json({ who: 'b' });
    const wire = Buffer.concat([request(a, bodyA), request(b, bodyB), request(a, bodyA), request(b, bodyB)]);
    const writes: Buffer[] = [];
    for (let i = 0; i < wire.length; i += 1) writes.push(wire.subarray(i, i + 1));
    const res = finals(await exchange(app.port, writes, { count: 4, ms: 8000 }));
    expect(res.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    expect([res[2]?.body, res[3]?.body]).toEqual([res[0]?.body, res[1]?.body]);
    expect(app.calls()).toBe(2);
    expect(app.bodies).toEqual([JSON.parse(bodyA.toString()), JSON.parse(bodyB.toString())]);
  });
});

describe('memory', () => {
  it('50,000 requests (runs, replays, 422s, unkeyed, clients leaving mid-body): every request and response collected, heap flat', () => {
    const fixture = new URL('./fixtures/express-heap.ts', import.meta.url).pathname;
    const child = spawnSync(
      process.execPath,
      ['--expose-gc', '--conditions=@holdfast/source', '--import', 'tsx', fixture, '50000'],
      { encoding: 'utf8', timeout: 150_000, cwd: new URL('..', import.meta.url).pathname },
    );
    expect(child.status, child.stderr).toBe(0);
    const out = JSON.parse(child.stdout) as {
      statuses: Record<string, number>;
      growth: number;
      registered: number;
      collected: number;
      socketListeners: { min: number; max: number };
      timeoutListeners: number;
    };
    // Every request answered: 201 (run or replay) or 422 (another body), none hung.
    expect((out.statuses['201'] ?? 0) + (out.statuses['422'] ?? 0)).toBe(50_000);
    // Nothing the watch keeps (the WeakMaps, the root's methods) holds a request or response.
    expect(out.registered).toBeGreaterThan(100_000);
    expect(out.collected).toBe(out.registered);
    // Measured 0.1-0.6 MB between 5,000 and 50,000 requests; a request's state kept is ~40 KB.
    expect(out.growth).toBeLessThan(8 * 1024 * 1024);
    // No listener left on a keep-alive socket per request.
    expect(out.socketListeners.max).toBe(out.socketListeners.min);
    // 'timeout': Node's own, and ours (one a connection, on its first watched response).
    expect(out.timeoutListeners).toBe(2);
  }, 180_000);
});

describe('a client that resets after its body, while the store answers', () => {
  /** A store whose claim answers after `ms`, as Redis does after a round trip. */
  function slowClaim(inner: IdempotencyStore, ms: number): IdempotencyStore {
    return {
      claim: async (...args) => {
        await sleep(ms);
        return inner.claim(...args);
      },
      complete: (...args) => inner.complete(...args),
      release: (...args) => inner.release(...args),
    };
  }

  it('the handler never runs without its body: the retry runs it with the body, once', async () => {
    const app = express();
    const seen: unknown[] = [];
    app.use(idempotency({ store: slowClaim(memoryStore(), 40), scope: 'global' }));
    app.use(express.json());
    app.post('/orders', (req, res) => {
      seen.push(req.body);
      // A handler that validates: without a body this is a 400, stored and replayed for the key.
      if (req.body?.amount === undefined) return void res.status(400).json({ error: 'amount required' });
      res.status(201).json({ n: seen.length, amount: req.body.amount });
    });
    const port = await listenNode(createServer(app));
    const key = newKey();
    const body = json({ amount: 9 });
    await new Promise<void>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => {
        // The whole request, then a reset before the store has answered the claim.
        socket.write(request(key, body), () =>
          setTimeout(() => {
            socket.resetAndDestroy();
            resolve();
          }, 5),
        );
      });
      socket.on('error', () => {});
    });
    await sleep(150);
    const retry = finals(await exchange(port, [request(key, body)], { count: 1, ms: 2000 }));
    expect(retry.map((r) => r.status)).toEqual([201]);
    expect(JSON.parse(retry[0]?.body ?? '{}')).toEqual({ n: 1, amount: 9 });
    // Body parsers skip a request whose connection is gone (body-parser: on-finished): the
    // handler saw either nothing (the first try released) or the body, never undefined.
    expect(seen).toEqual([{ amount: 9 }]);
  });
});

import { createServer, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeAll, listenNode } from './http-support/body-apps.js';
import { newKey } from './http-support/support.js';

// The Express middleware watches bodies and responses through Express's own request and response
// objects (the roots of their prototype chains), keeping its state in maps, not on the request or
// response: Express gives each of them a map of its own, so a property added there copied every
// property descriptor (about 1.5 KB and a slow lookup a request). These tests hold the watch to
// what it must do from there, and to adding nothing to the objects.

afterEach(closeAll);

const body = JSON.stringify({ amount: 4200, currency: 'eur' });

function post(port: number, key: string | undefined, payload = body, path = '/orders') {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (key !== undefined) headers['idempotency-key'] = key;
  return fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers, body: payload }).then(async (r) => ({
    status: r.status,
    text: await r.text(),
  }));
}

/** Everything a handler can see the request and response own, by key (values left out). */
function ownKeys(object: object): string[] {
  return Reflect.ownKeys(object)
    .map((k) => String(k))
    .sort();
}

async function app(options: { guarded: boolean; before?: express.RequestHandler[] }) {
  const a = express();
  const seen: { req: string[]; res: string[] }[] = [];
  let calls = 0;
  for (const mw of options.before ?? []) a.use(mw);
  if (options.guarded) a.use(idempotency({ store: memoryStore(), scope: 'global' }));
  a.use(express.json());
  a.post('/orders', (req, res) => {
    seen.push({ req: ownKeys(req), res: ownKeys(res) });
    res.status(201).json({ n: ++calls, body: req.body });
  });
  const port = await listenNode(createServer(a));
  return { port, seen, calls: () => calls, app: a };
}

describe('Express: the middleware adds nothing to requests and responses', () => {
  it('a keyed POST leaves the request and response with the own properties a bare app gives them', async () => {
    const bare = await app({ guarded: false });
    const guarded = await app({ guarded: true });
    expect((await post(bare.port, newKey())).status).toBe(201);
    expect((await post(guarded.port, newKey())).status).toBe(201);
    // Express adds `body` (the parser) and the router's properties in both; ours adds none.
    expect(guarded.seen[0]?.req).toEqual(bare.seen[0]?.req);
    expect(guarded.seen[0]?.res).toEqual(bare.seen[0]?.res);
  });
});

describe('Express: the watch through the prototype', () => {
  it('runs once, replays, and refuses a changed body, on two apps in one process and a mounted sub-app', async () => {
    const first = await app({ guarded: true });
    const second = await app({ guarded: true });
    // A sub-app: Express swaps the request's and response's prototypes to the sub-app's on entry.
    const sub = express.Router();
    let subCalls = 0;
    sub.post('/orders', (req, res) => {
      res.status(201).json({ sub: ++subCalls, body: req.body });
    });
    const inner = express();
    inner.use(idempotency({ store: memoryStore(), scope: 'global' }));
    inner.use(express.json());
    inner.use(sub);
    const outer = express();
    outer.use('/shop', inner);
    const mounted = await listenNode(createServer(outer));

    for (const [port, path] of [
      [first.port, '/orders'],
      [second.port, '/orders'],
      [mounted, '/shop/orders'],
    ] as const) {
      const key = newKey();
      const a = await post(port, key, body, path);
      const b = await post(port, key, body, path);
      const changed = await post(port, key, JSON.stringify({ amount: 1 }), path);
      expect([a.status, b.status, changed.status]).toEqual([201, 201, 422]);
      expect(b.text).toBe(a.text);
      expect(JSON.parse(a.text).body).toEqual(JSON.parse(body));
    }
    expect([first.calls(), second.calls(), subCalls]).toEqual([1, 1, 1]);
  });

  it('a request whose client leaves mid-body holds no key, and unkeyed bodies pass through whole', async () => {
    const a = await app({ guarded: true });
    const key = newKey();
    // Half the body, then the client is gone: the request is destroyed before its body came whole.
    await new Promise<void>((resolve) => {
      const socket = connect(a.port, '127.0.0.1', () => {
        socket.write(
          `POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: ${key}\r\n` +
            `Content-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`,
        );
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 50);
      });
    });
    const retry = await post(a.port, key);
    expect(retry.status).toBe(201);
    expect(a.calls()).toBe(1);
    // Requests the middleware does not watch go through Express's patched push untouched.
    const plain = await Promise.all(
      Array.from({ length: 20 }, (_, i) => post(a.port, undefined, JSON.stringify({ i }))),
    );
    expect(plain.map((r) => JSON.parse(r.text).body.i)).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it('a layer before ours that sets its own push on the request: still watched, run once, replayed', async () => {
    let pushes = 0;
    const own: express.RequestHandler = (req, _res, next) => {
      const push = req.push.bind(req);
      (req as IncomingMessage & { push: typeof push }).push = (chunk: unknown, encoding?: BufferEncoding) => {
        pushes++;
        return push(chunk, encoding);
      };
      next();
    };
    const a = await app({ guarded: true, before: [own] });
    const key = newKey();
    const first = await post(a.port, key);
    const again = await post(a.port, key);
    const changed = await post(a.port, key, JSON.stringify({ amount: 2 }));
    expect([first.status, again.status, changed.status]).toEqual([201, 201, 422]);
    expect(again.text).toBe(first.text);
    expect(a.calls()).toBe(1);
    expect(pushes).toBeGreaterThan(0);
  });
});

import { HoldfastConfigError } from '@holdfast/core';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { idempotency } from '../src/express.js';
import { memoryStore } from '../src/index.js';
import { closeServers, listen, newKey, send, spy } from './http-support/support.js';

afterEach(closeServers);

describe('express middleware', () => {
  it('works mounted on one route, after the body parser', async () => {
    const app = express();
    let calls = 0;
    app.post('/orders', express.json(), idempotency({ scope: 'global', store: memoryStore() }), (req, res) => {
      res.status(201).json({ n: ++calls, body: req.body });
    });
    app.post('/other', express.json(), (_req, res) => {
      res.json({ n: ++calls });
    });
    const url = await listen(app);
    const key = newKey();
    await send(`${url}/orders`, { key, body: { a: 1 } });
    const again = await send(`${url}/orders`, { key, body: { a: 1 } });
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.json()).toEqual({ n: 1, body: { a: 1 } });
    await send(`${url}/other`, { key, body: {} });
    expect((await send(`${url}/other`, { key, body: {} })).json()).toEqual({ n: 3 });
  });

  it('captures headers given to writeHead() and bodies given to end() on the raw response', async () => {
    const app = express();
    app.use(express.json(), idempotency({ scope: 'global', store: memoryStore() }));
    let calls = 0;
    app.post('/raw', (_req, res) => {
      calls++;
      res.writeHead(202, { 'Content-Type': 'text/csv', 'Set-Cookie': 'sid=1', ETag: '"v1"' });
      res.end(Buffer.from('a,b\n1,2\n'));
    });
    app.post('/flat', (_req, res) => {
      calls++;
      res.writeHead(200, ['Content-Type', 'text/plain', 'Link', '</a>; rel="next"']);
      res.end('flat', 'utf8');
    });
    const url = await listen(app);
    const key = newKey();
    await send(`${url}/raw`, { key, body: {} });
    const raw = await send(`${url}/raw`, { key, body: {} });
    expect(raw.status).toBe(202);
    expect(raw.text).toBe('a,b\n1,2\n');
    expect(raw.headers.get('content-type')).toBe('text/csv');
    expect(raw.headers.get('etag')).toBe('"v1"');
    expect(raw.headers.get('set-cookie')).toBeNull();
    const flatKey = newKey();
    await send(`${url}/flat`, { key: flatKey, body: {} });
    const flat = await send(`${url}/flat`, { key: flatKey, body: {} });
    expect(flat.text).toBe('flat');
    expect(flat.headers.get('link')).toBe('</a>; rel="next"');
    expect(calls).toBe(2);
  });

  it('mounted before the body parsers: reads the bytes, fingerprints them, and hands them on unread', async () => {
    const app = express();
    const store = spy(memoryStore());
    app.use(idempotency({ scope: 'global', store }), express.json(), express.text());
    let calls = 0;
    app.post('/orders', (req, res) => {
      res.json({ n: ++calls, body: req.body });
    });
    const url = await listen(app);
    const key = newKey();
    const first = await send(`${url}/orders`, { key, body: { a: 1 } });
    expect(first.json()).toEqual({ n: 1, body: { a: 1 } });
    expect((await send(`${url}/orders`, { key, body: { a: 1 } })).headers.get('idempotent-replayed')).toBe('true');
    expect((await send(`${url}/orders`, { key, raw: '{"a": 1}', contentType: 'application/json' })).status).toBe(422);
    const text = await send(`${url}/orders`, { key: newKey(), raw: 'plain words', contentType: 'text/plain' });
    expect(text.json()).toEqual({ n: 2, body: 'plain words' });
    // A bodiless POST needs no parser.
    expect((await send(`${url}/orders`, { key: newKey() })).status).toBe(200);
    expect(calls).toBe(3);
  });

  it('passes an error thrown by scope() to the error handler, claiming nothing', async () => {
    const app = express();
    const store = spy(memoryStore());
    app.use(
      express.json(),
      idempotency({
        store,
        scope: () => {
          throw new Error('no session');
        },
      }),
    );
    app.post('/orders', (_req, res) => {
      res.json({});
    });
    let seen: unknown;
    app.use((err: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
      seen = err;
      res.status(401).end();
    });
    const url = await listen(app);
    expect((await send(`${url}/orders`, { key: newKey(), body: {} })).status).toBe(401);
    expect((seen as Error).message).toBe('no session');
    expect(store.counts.claim).toBe(0);
  });

  it('refuses bad options at once, naming them', () => {
    expect(() => idempotency({ scope: 'global', store: memoryStore(), methods: ['POST', 'not a method'] })).toThrow(
      /methods\.1/,
    );
    expect(() => idempotency({ scope: 'global', store: {} as never })).toThrow(HoldfastConfigError);
    expect(() => idempotency({ scope: 'global', store: memoryStore(), bogus: 1 } as never)).toThrow(
      /bogus is not a known option/,
    );
  });
});

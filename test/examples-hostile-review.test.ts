import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { start as startExpress } from '../examples/orders-express/main.js';
import { start as startFastify } from '../examples/orders-fastify/main.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

// What a new user copies from the orders examples, attacked as production would: every bad input
// is a 4xx with an application/problem+json body (never a 500, never HTML), a failing dependency
// is a 5xx problem the client may retry with the same key, and keys are scoped to a caller the
// service knows (no shared "anonymous" key space).

interface Answer {
  readonly status: number;
  readonly type: string | null;
  readonly body: string;
}

describe.skipIf(!redisAvailable())('examples/orders-*: hostile input', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(stopAllRedis);

  for (const [name, start] of [
    ['express', startExpress],
    ['fastify', startFastify],
  ] as const) {
    it(`${name}: bad bodies, content types, accounts and amounts get 4xx problems`, async () => {
      const orders = await start({ redisUrl: redis.url, port: 0 });
      let n = 0;
      const send = async (init: { body?: string; headers?: Record<string, string> }): Promise<Answer> => {
        const res = await fetch(`${orders.url}/orders`, {
          method: 'POST',
          headers: { 'idempotency-key': `${name}-hostile-${n++}`, 'x-account': 'acme', ...init.headers },
          body: init.body ?? null,
        });
        return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
      };
      const json = { 'content-type': 'application/json' };
      try {
        const cases: [string, Promise<Answer>, number][] = [
          ['bad JSON', send({ body: '{"sku":', headers: json }), 400],
          ['JSON null', send({ body: 'null', headers: json }), 400],
          [
            'text/plain',
            send({ body: '{"sku":"kettle","amount":4200}', headers: { 'content-type': 'text/plain' } }),
            415,
          ],
          ['no content type, no body', send({}), 415],
          [
            'a form',
            send({ body: 'sku=kettle', headers: { 'content-type': 'application/x-www-form-urlencoded' } }),
            415,
          ],
          [
            '500 kB of JSON',
            send({ body: JSON.stringify({ sku: 'k'.repeat(500_000), amount: 1 }), headers: json }),
            413,
          ],
          ['a negative amount', send({ body: '{"sku":"kettle","amount":-4200}', headers: json }), 400],
          ['a fractional amount', send({ body: '{"sku":"kettle","amount":0.5}', headers: json }), 400],
          [
            'two accounts',
            send({ body: '{"sku":"kettle","amount":4200}', headers: { ...json, 'x-account': 'acme, globex' } }),
            401,
          ],
          ['no account', send({ body: '{"sku":"kettle","amount":4200}', headers: { ...json, 'x-account': '' } }), 401],
        ];
        for (const [what, answer, status] of cases) {
          const a = await answer;
          expect({ what, status: a.status }, a.body).toEqual({ what, status });
          expect({ what, type: a.type }).toEqual({ what, type: expect.stringMatching(/^application\/problem\+json/) });
          expect(JSON.parse(a.body), what).toMatchObject({ status, title: expect.any(String) });
        }
      } finally {
        await orders.close();
      }
    });

    it(`${name}: payments unreachable is a 503 problem, and its key is released for the retry`, async () => {
      const { startPayments } = await import('../examples/shared/payments.js');
      const payments = await startPayments(2);
      const urls = [...payments.urls];
      await payments.close(); // both instances gone: nothing answers on their ports
      const orders = await start({ redisUrl: redis.url, port: 0, paymentsUrls: urls });
      try {
        for (let i = 0; i < 2; i++) {
          const res = await fetch(`${orders.url}/orders`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'idempotency-key': `${name}-down`, 'x-account': 'acme' },
            body: '{"sku":"kettle","amount":4200}',
          });
          const body = await res.text();
          expect(res.status, body).toBe(503);
          expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
          expect(res.headers.get('idempotent-replayed')).toBeNull(); // a 5xx is not stored: the retry ran
          expect(body).not.toMatch(/ECONNREFUSED|at .*\.ts/); // no internals
        }
      } finally {
        await orders.close();
      }
    });

    it(`${name}: concurrent requests with one key charge once; a client that never finishes its request cannot hold shutdown`, async () => {
      const orders = await start({ redisUrl: redis.url, port: 0, shutdownGraceMs: 500 });
      const post = () =>
        fetch(`${orders.url}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': `${name}-same`, 'x-account': 'acme' },
          body: '{"sku":"kettle","amount":4200}',
        }).then(async (res) => ({
          status: res.status,
          replayed: res.headers.get('idempotent-replayed'),
          body: await res.text(),
        }));
      const answers = await Promise.all(Array.from({ length: 8 }, post));
      const ran = answers.filter((a) => a.status === 201 && a.replayed === null);
      expect(ran, JSON.stringify(answers)).toHaveLength(1);
      for (const a of answers) expect([201, 409], a.body).toContain(a.status);
      expect(orders.payments?.ledger.size).toBe(1);

      // Half a request, never finished: a stuck client, or a slowloris.
      const { connect } = await import('node:net');
      const socket = connect(Number(new URL(orders.url).port), '127.0.0.1');
      socket.on('error', () => {});
      socket.write(
        'POST /orders HTTP/1.1\r\nhost: x\r\nx-account: acme\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"sk',
      );
      await new Promise((resolve) => setTimeout(resolve, 100)); // let the server take the request in
      const closed = orders.close().then(() => 'closed');
      const limit = new Promise((resolve) => setTimeout(resolve, 5_000, 'still open after 5 s'));
      expect(await Promise.race([closed, limit])).toBe('closed');
      socket.destroy();
    }, 15_000);
  }
});

describe('examples/demo: its POST /orders, attacked while the demo runs', () => {
  it('refuses a caller without x-client (no shared key space), non-JSON and bad JSON with 4xx problems', async () => {
    const { spawn } = await import('node:child_process');
    const { join } = await import('node:path');
    const child = spawn(
      process.execPath,
      ['--conditions=@holdfast/source', '--import', 'tsx', 'examples/demo/main.ts'],
      {
        cwd: join(import.meta.dirname, '..'),
        env: { ...process.env, DEMO_SCALE: '0.3', DEMO_SEED: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      let out = '';
      const api = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => {
          out += d;
          const m = /live dashboard at (http:\/\/127\.0\.0\.1:\d+)\//.exec(out);
          if (m) resolve(m[1] as string);
        });
        child.once('exit', () => reject(new Error(`the demo exited: ${out}`)));
      });
      const send = async (headers: Record<string, string>, body: string) => {
        const res = await fetch(`${api}/orders`, {
          method: 'POST',
          headers: { 'idempotency-key': `h-${Math.random()}`, ...headers },
          body,
        });
        return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
      };
      const json = { 'content-type': 'application/json' };
      const order = '{"sku":"kettle","qty":1}';
      for (const [what, answer, status] of [
        ['no x-client', await send(json, order), 401],
        ['text/plain', await send({ 'content-type': 'text/plain', 'x-client': 'client-x' }, order), 415],
        ['bad JSON', await send({ ...json, 'x-client': 'client-x' }, '{"sku'), 400],
      ] as const) {
        expect({ what, status: answer.status, type: answer.type }, answer.body).toEqual({
          what,
          status,
          type: expect.stringMatching(/^application\/problem\+json/),
        });
      }
    } finally {
      child.kill('SIGKILL');
    }
  }, 30_000);
});

describe('examples/nest-style: a frozen dependency', () => {
  it('a call that @timeout gave up on does not keep its connection to the dependency', async () => {
    const { createServer } = await import('node:http');
    const { start } = await import('../examples/nest-style/main.js');
    // An inventory that takes requests in and never answers: a hung server. `open`: the
    // connections that carry a request (undici may also keep an idle one, which it closes itself).
    const open = new Set<import('node:net').Socket>();
    const inventory = createServer((req) => {
      open.add(req.socket);
      req.socket.once('close', () => open.delete(req.socket));
    });
    await new Promise<void>((resolve) => inventory.listen(0, '127.0.0.1', resolve));
    const service = await start({
      inventoryUrl: `http://127.0.0.1:${(inventory.address() as { port: number }).port}`,
      port: 0,
    });
    try {
      const res = await fetch(`${service.url}/stock/kettle`);
      expect(res.status).toBe(503); // three tries of 1 s each timed out
      await res.arrayBuffer();
      // Each timed-out try's fetch is cancelled with it: the hung server's connections close.
      const until = Date.now() + 3_000;
      while (open.size > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(open.size, 'connections to the hung inventory still open 3 s after the 503').toBe(0);
    } finally {
      await service.close();
      inventory.closeAllConnections();
      await new Promise((resolve) => inventory.close(resolve));
    }
  }, 20_000);
});

/**
 * Hostile review of @holdfast/limit at its edges, against real HTTP servers: what a user's
 * predicate, a client's key or a request's shape does to the load-shedding middleware.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { adaptiveConcurrency, ipKey, tokenBucket } from '@holdfast/limit';
import { loadShedding as expressShedding } from '@holdfast/limit/express';
import { loadShedding as fastifyShedding } from '@holdfast/limit/fastify';
import express from 'express';
import Fastify from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
});

/** An app behind the middleware: GET /boom answers 500, GET /ok 200. Resolves to its base URL. */
const apps = {
  async express(options: object): Promise<string> {
    const app = express();
    // Behind one reverse proxy on this host: it writes the client's address into X-Forwarded-For.
    app.set('trust proxy', 'loopback');
    app.use(expressShedding(options as never));
    app.get('/boom', (_req, res) => void res.status(500).json({ error: 'boom' }));
    app.get('/ok', (_req, res) => void res.json({ ok: true }));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    closers.push(
      () =>
        new Promise((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
    );
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  },
  async fastify(options: object): Promise<string> {
    const app = Fastify({ forceCloseConnections: true, trustProxy: '127.0.0.1' });
    await app.register(fastifyShedding, options as never);
    app.get('/boom', async (_req, reply) => reply.code(500).send({ error: 'boom' }));
    app.get('/ok', async () => ({ ok: true }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    closers.push(() => app.close());
    return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  },
};

/** GET `path` as the reverse proxy would send it for a client at `client`: its status. */
function viaProxy(url: string, path: string, client: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { headers: { 'x-forwarded-for': client }, agent: false }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode as number));
    });
    req.once('error', reject);
    req.end();
  });
}

describe.each(['express', 'fastify'] as const)('load shedding on %s, hostile review', (framework) => {
  it('an async key (the user looked up from a token) keys each user, not one limit for all', async () => {
    const perUser = tokenBucket({ limit: 2, interval: 60_000, policies: false });
    const users: Record<string, string> = { 'token-a': 'alice', 'token-b': 'bob' };
    const key = async (req: { headers: Record<string, string | string[] | undefined> }) => {
      await new Promise((r) => setImmediate(r)); // a session store
      return users[String(req.headers.authorization)];
    };
    const url = await apps[framework]({ policy: perUser, key });
    const as = async (token: string) => {
      const out: number[] = [];
      for (let i = 0; i < 3; i++) out.push((await fetch(`${url}/ok`, { headers: { authorization: token } })).status);
      return out;
    };
    expect(await as('token-a')).toEqual([200, 200, 429]);
    // Before: the promise's String(), '[object Promise]', was every user's key: bob got [429, 429, 429].
    expect(await as('token-b')).toEqual([200, 200, 429]);
    expect(perUser.snapshot()).toMatchObject({ keys: 2, allowed: 4, rejected: 2 });
  });

  it('an async key that rejects fails the request as a key that throws does (the app answers 500), keeping no place', async () => {
    const gate = tokenBucket({ limit: 1, interval: 60_000, policies: false });
    const url = await apps[framework]({
      policy: gate,
      key: async (req: { url: string }) => {
        if (req.url.includes('fail')) throw new Error('session store down');
        return 'k';
      },
    });
    expect((await fetch(`${url}/ok?fail`)).status).toBe(500);
    expect((await fetch(`${url}/ok`)).status).toBe(200);
    expect(gate.snapshot()).toMatchObject({ keys: 1, allowed: 1, rejected: 0 });
  });

  it('keyed by ipKey(req.ip): one client rotating through its IPv6 network, or respelling its address, gets one limit', async () => {
    const limit = 5;
    const policy = () => tokenBucket({ limit, interval: 60_000, policies: false });
    // 100 addresses of one customer's /56 (2001:db8:7:ab00::/56), spelled as a client may write them.
    const addresses = Array.from({ length: 100 }, (_, i) =>
      i % 2 === 0
        ? `2001:db8:7:ab${(i % 256).toString(16).padStart(2, '0')}::${i.toString(16)}`
        : `2001:0DB8:0007:AB00:0:0:0:${i.toString(16)}`,
    );
    const admitted = async (url: string) => {
      let ok = 0;
      for (const a of addresses) if ((await viaProxy(url, '/ok', a)) === 200) ok++;
      return ok;
    };
    // The README's key, the full address: a fresh limit per address.
    const byAddress = await admitted(
      await apps[framework]({ policy: policy(), key: (req: { ip?: string }) => req.ip }),
    );
    expect(byAddress).toBe(100);
    const byNetwork = await admitted(
      await apps[framework]({ policy: policy(), key: (req: { ip?: string }) => ipKey(req.ip) }),
    );
    expect(byNetwork).toBe(limit);
    // IPv4 and its IPv4-mapped IPv6 spelling are one client; another network keeps its own limit.
    const url = await apps[framework]({ policy: policy(), key: (req: { ip?: string }) => ipKey(req.ip) });
    const v4 = [];
    for (let i = 0; i < 2 * limit; i++)
      v4.push(await viaProxy(url, '/ok', i % 2 ? '203.0.113.7' : '::ffff:203.0.113.7'));
    expect(v4).toEqual([...Array(limit).fill(200), ...Array(limit).fill(429)]);
    expect(await viaProxy(url, '/ok', '2001:db8:7:ac00::1')).toBe(200);
    console.info(
      `${framework}: 100 addresses of one /56 behind a proxy, limit ${limit}: key req.ip admitted ${byAddress}, ipKey(req.ip) ${byNetwork}`,
    );
  });

  it('an isDrop that throws on a 5xx (written for an HTTP client: err.response.status) keeps no place', async () => {
    const limiter = adaptiveConcurrency({
      algorithm: 'aimd',
      initialLimit: 4,
      minLimit: 4,
      policies: false,
      isDrop: (e) => (e as { response: { status: number } }).response.status >= 500,
    });
    const url = await apps[framework]({ policy: limiter });
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await fetch(`${url}/boom`)).status);
    const after: number[] = [];
    for (let i = 0; i < 10; i++) after.push((await fetch(`${url}/ok`)).status);
    // Before: each 500 kept its place (isDrop's TypeError was lost in the middleware): after 4,
    // every request, /ok too, got 503 for good.
    expect(statuses).toEqual(Array(10).fill(500));
    expect(after).toEqual(Array(10).fill(200));
    expect(limiter.snapshot()).toMatchObject({ inFlight: 0, samples: 20, rejected: 0 });
  });
});

const worker = fileURLToPath(new URL('./support/limit-redis-worker.ts', import.meta.url));
interface WorkerReport {
  allowed: number[];
  refused: number;
  unavailable: number;
  otherErrors: number;
  storeErrors: number;
  longest: number;
}

/** Starts a worker process; resolves once it is connected. */
async function startWorker(args: string[]) {
  const child = spawn(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', worker, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  closers.push(async () => void child.kill('SIGKILL'));
  const lines = createInterface({ input: child.stdout });
  const read = lines[Symbol.asyncIterator]();
  expect((await read.next()).value).toBe('ready');
  return {
    go: () => child.stdin.write('go\n'),
    stop: async () => {
      child.stdin.write('stop\n');
      return JSON.parse((await read.next()).value as string) as WorkerReport;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!redisAvailable())(
  'redisRateLimiter shared by two processes while Redis is frozen, killed and restarted empty',
  () => {
    afterAll(stopAllRedis);

    it.each(['open', 'closed'] as const)(
      '%s: no decision outlives its timeout; afterwards the limit holds within the tolerance',
      async (mode) => {
        const LIMIT = 100;
        const BURST = 10;
        const TIMEOUT = 200;
        const [server] = (await startRedis(1)) as [RedisServer];
        const args = [server.url, mode, String(LIMIT), String(BURST), String(TIMEOUT), '4'];
        const workers = await Promise.all([startWorker(args), startWorker(args)]);
        for (const w of workers) w.go();
        await sleep(1_000);
        server.pause(); // frozen: connections open, nothing answered
        await sleep(1_000);
        server.resume();
        await sleep(1_000);
        await server.kill();
        await sleep(1_000);
        await server.restart(); // empty: every key, script and resend marker gone
        const probe = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 });
        await probe.ping();
        const back = Date.now();
        await sleep(2_500);
        const [a, b] = await Promise.all(workers.map((w) => w.stop()));
        probe.disconnect();
        const reports = [a, b] as WorkerReport[];
        const end = Date.now();
        const total = (f: (r: WorkerReport) => number) => reports.reduce((n, r) => n + f(r), 0);

        // No decision outlived commandTimeout by more than a busy event loop's delay.
        for (const r of reports) expect(r.longest).toBeLessThan(TIMEOUT + 500);
        expect(total((r) => r.otherErrors)).toBe(0);
        if (mode === 'closed') expect(total((r) => r.unavailable)).toBeGreaterThan(0);
        else expect(total((r) => r.unavailable)).toBe(0);
        expect(total((r) => r.storeErrors)).toBeGreaterThan(0);
        // Once the clients reconnected to the empty server (commandTimeout after it was back, at most),
        // every answer is Redis's: at most burst + limit x elapsed since it came back, +5%.
        const settled = back + TIMEOUT;
        const after = total((r) => r.allowed.filter((t) => t >= settled).length);
        const bound = BURST + (LIMIT * (end - back)) / 1000;
        expect(after).toBeLessThanOrEqual(Math.ceil(bound * 1.05));
        console.info(
          `${mode}: 2 processes, limit ${LIMIT}/s burst ${BURST}, frozen 1 s, killed 1 s, restarted empty: ` +
            `longest decision ${Math.max(a?.longest ?? 0, b?.longest ?? 0)} ms (timeout ${TIMEOUT}), ` +
            `store errors ${total((r) => r.storeErrors)}, refused as unavailable ${total((r) => r.unavailable)}, ` +
            `allowed after the restart ${after} (bound ${Math.floor(bound)})`,
        );
      },
      30_000,
    );
  },
);

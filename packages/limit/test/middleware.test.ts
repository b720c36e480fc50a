import { type AddressInfo, connect } from 'node:net';
import { BrokenCircuitError, createPolicyRegistry, type Policy, pipeline, timeout } from '@holdfast/core';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { loadShedding as expressShedding } from '../src/express.js';
import { loadShedding as fastifyShedding } from '../src/fastify.js';
import { type Bulkhead, bulkhead, type LoadSheddingOptions, RateLimitedError, tokenBucket } from '../src/index.js';

type Options = LoadSheddingOptions<{ headers: Record<string, unknown>; url: string }>;
interface App {
  readonly url: string;
  readonly stats: { running: number; peak: number; served: number };
  close(): Promise<void>;
}

/** More than loopback's socket buffers hold: a client that does not read leaves most of it unsent. */
const big = Buffer.alloc(16 * 1024 * 1024, 97);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const apps: App[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.close()));
});

/**
 * A handler's work: `ms` milliseconds, or until the test opens a gate (see {@link gate}), where a
 * fixed time only stood for "until the test has seen what it needs while the handler runs".
 */
type Work = number | Promise<void>;
const work = (delay: Work) => (typeof delay === 'number' ? sleep(delay) : delay);
/** A handler that runs until `open()`. */
function gate(): { closed: Promise<void>; open(): void } {
  let open = () => {};
  const closed = new Promise<void>((r) => (open = r));
  return { closed, open };
}

/** An app whose GET /work takes `delay` (ms, or a gate) and GET /cheap answers at once, behind the middleware. */
const frameworks = {
  async express(options: Options, delay: Work): Promise<App> {
    const stats = { running: 0, peak: 0, served: 0 };
    const app = express();
    app.use(expressShedding(options as never));
    app.get('/work', async (_req, res) => {
      stats.running++;
      stats.peak = Math.max(stats.peak, stats.running);
      await work(delay);
      stats.running--;
      stats.served++;
      res.json({ ok: true });
    });
    app.get('/cheap', (_req, res) => void res.json({ ok: true }));
    app.get('/big', (_req, res) => {
      stats.served++;
      res.send(big);
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const made: App = {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      stats,
      close: () =>
        new Promise((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
    };
    apps.push(made);
    return made;
  },
  async fastify(options: Options, delay: Work): Promise<App> {
    const stats = { running: 0, peak: 0, served: 0 };
    const app = Fastify({ forceCloseConnections: true });
    await app.register(fastifyShedding, options as never);
    app.get('/work', async () => {
      stats.running++;
      stats.peak = Math.max(stats.peak, stats.running);
      await work(delay);
      stats.running--;
      stats.served++;
      return { ok: true };
    });
    app.get('/cheap', async () => ({ ok: true }));
    app.get('/big', async (_req, reply) => {
      stats.served++;
      return reply.type('application/octet-stream').send(big);
    });
    const address = await app.listen({ port: 0, host: '127.0.0.1' });
    const made: App = { url: address, stats, close: () => app.close() };
    apps.push(made);
    return made;
  },
};

for (const [framework, serve] of Object.entries(frameworks)) {
  describe(`load shedding on ${framework}`, () => {
    it('under 10x overload: never more than N run; the rest get 503 problem+json with Retry-After, without waiting', async () => {
      // The handlers run until every request is running or answered (a fixed 1 s stood for that).
      const held = gate();
      const b = bulkhead({ maxConcurrent: 4, policies: false });
      const app = await serve({ policy: b, retryAfter: 2_000 }, held.closed);
      let answered = 0;
      const all = Promise.all(
        Array.from({ length: 40 }, async () => {
          const start = performance.now();
          const res = await fetch(`${app.url}/work`);
          const body = await res.text();
          const ms = performance.now() - start;
          answered++;
          return {
            status: res.status,
            type: res.headers.get('content-type'),
            retryAfter: res.headers.get('retry-after'),
            body,
            ms,
          };
        }),
      );
      await expect.poll(() => answered + app.stats.running, { timeout: 10_000 }).toBe(40);
      held.open();
      const responses = await all;
      const admitted = responses.filter((r) => r.status === 200);
      const shed = responses.filter((r) => r.status !== 200);
      expect(app.stats.peak).toBe(4);
      expect(admitted.length).toBe(app.stats.served);
      expect(admitted.length).toBeGreaterThanOrEqual(4);
      expect(shed.length).toBeGreaterThanOrEqual(20);
      for (const r of shed) {
        expect(r.status).toBe(503);
        expect(r.type).toMatch(/^application\/problem\+json/);
        expect(r.retryAfter).toBe('2');
        expect(JSON.parse(r.body)).toMatchObject({
          type: 'urn:holdfast:problem:overloaded',
          status: 503,
          code: 'E_BULKHEAD_FULL',
        });
      }
      expect(b.running).toBe(0);
      const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]?.toFixed(0);
      console.info(
        `${framework}: 40 requests, bulkhead 4, handlers held until the others were answered: admitted ${admitted.length} ` +
          `(median ${median(admitted.map((r) => r.ms))} ms), shed ${shed.length} (median ${median(shed.map((r) => r.ms))} ms)`,
      );
    });

    it('per key: each user has its own rate limit; 429 with Retry-After; another user is not affected', async () => {
      const perUser = tokenBucket({ limit: 2, interval: 60_000, policies: false });
      const app = await serve({ policy: perUser, key: (req) => String(req.headers['x-user'] ?? 'anonymous') }, 0);
      const get = (user: string) => fetch(`${app.url}/cheap`, { headers: { 'x-user': user } });
      expect((await get('alice')).status).toBe(200);
      expect((await get('alice')).status).toBe(200);
      const limited = await get('alice');
      expect(limited.status).toBe(429);
      expect(Number(limited.headers.get('retry-after'))).toBe(30);
      expect(await limited.json()).toMatchObject({
        type: 'urn:holdfast:problem:rate-limited',
        status: 429,
        code: 'E_RATE_LIMITED',
      });
      expect((await get('bob')).status).toBe(200);
    });

    it('an async key still looked up when the client hangs up takes nothing from the limit (the client left while queued)', async () => {
      const gate = tokenBucket({ limit: 1, interval: 60_000, policies: false });
      let lookedUp = () => {};
      const started = new Promise<void>((r) => (lookedUp = r));
      let hungUp: Promise<unknown> = Promise.resolve();
      let answer = () => {};
      const slowStore = new Promise<void>((r) => (answer = r));
      const app = await serve(
        {
          policy: gate,
          key: async (req) => {
            if (req.url.includes('slow')) {
              const socket = (req as unknown as { socket: NodeJS.EventEmitter }).socket;
              hungUp = new Promise((r) => socket.once('close', r));
              lookedUp();
              await slowStore; // a session store that answers late
            }
            return 'user';
          },
        },
        0,
      );
      const client = new AbortController();
      const leaving = fetch(`${app.url}/cheap?slow`, { signal: client.signal }).catch((error: Error) => error.name);
      await started;
      client.abort();
      expect(await leaving).toBe('AbortError');
      await hungUp;
      answer();
      // Before: the late key took the only token for nobody, and the client's next request got 429.
      expect((await fetch(`${app.url}/cheap`)).status).toBe(200);
      expect(gate.snapshot()).toMatchObject({ allowed: 1, rejected: 0 });
    });

    it('a key that is not a string (a repeated query parameter, a number, an object) is limited, never a 500', async () => {
      const perUser = tokenBucket({ limit: 2, interval: 60_000, policies: false });
      // A common shape: the key read from the query and cast; `?user=a&user=a` makes it an array.
      const key = (req: { url: string }) => {
        const all = new URL(req.url, 'http://x').searchParams.getAll('user');
        const shape = new URL(req.url, 'http://x').searchParams.get('shape');
        if (shape === 'number') return 7 as unknown as string;
        if (shape === 'object') return Object.create(null) as string;
        return (all.length > 1 ? all : all[0]) as string;
      };
      const app = await serve({ policy: perUser, key }, 0);
      const statuses = async (query: string) => {
        const out: number[] = [];
        for (let i = 0; i < 4; i++) out.push((await fetch(`${app.url}/cheap?${query}`)).status);
        return out;
      };
      expect(await statuses('user=a&user=a')).toEqual([200, 200, 429, 429]);
      expect(await statuses('shape=number')).toEqual([200, 200, 429, 429]);
      expect(await statuses('shape=object')).toEqual([200, 200, 429, 429]);
      expect(perUser.snapshot()).toMatchObject({ keys: 3, allowed: 6, rejected: 6 });
    });

    it('Retry-After is always whole seconds: a wait past 2^31 s is capped, a NaN wait takes the retryAfter option', async () => {
      // The longest interval a limiter takes (1e15 ms): a wait of 1e12 s.
      const yearly = tokenBucket({ limit: 1, interval: 1e15, policies: false });
      const odd: Policy = { name: 'odd', execute: () => Promise.reject(new RateLimitedError('odd', Number.NaN)) };
      const app = await serve({ policy: (req) => (req.url.startsWith('/work') ? odd : yearly), retryAfter: 3_000 }, 0);
      expect((await fetch(`${app.url}/cheap`)).status).toBe(200);
      const far = await fetch(`${app.url}/cheap`);
      expect(far.status).toBe(429);
      // Before: "1e+27", which no client reads as a delay.
      expect(far.headers.get('retry-after')).toBe('2147483648');
      const nan = await fetch(`${app.url}/work`);
      expect(nan.status).toBe(429);
      expect(nan.headers.get('retry-after')).toBe('3');
    });

    it('200 requests hanging up at random (queued, running, never), HEAD among them: every place comes back', async () => {
      const b = bulkhead({ maxConcurrent: 2, maxQueue: 5, policies: false });
      const app = await serve({ policy: pipeline(tokenBucket({ limit: 10_000, policies: false }), b) }, 15);
      const outcomes = await Promise.all(
        Array.from({ length: 200 }, async (_, i) => {
          const caller = new AbortController();
          if (i % 4 !== 0) setTimeout(() => caller.abort(), (i * 7) % 40);
          const method = i % 5 === 0 ? 'HEAD' : 'GET';
          return fetch(`${app.url}/work`, { method, signal: caller.signal }).then(
            (r) => r.status,
            () => 'gone',
          );
        }),
      );
      expect(outcomes.filter((o) => o !== 200 && o !== 503 && o !== 'gone')).toEqual([]);
      expect(app.stats.peak).toBeLessThanOrEqual(2);
      await expect.poll(() => b.snapshot()).toMatchObject({ running: 0, queued: 0 });
    });

    it('clients that never read their response do not keep a place once the handler has ended it', async () => {
      const b = bulkhead({ maxConcurrent: 2, policies: false });
      const app = await serve({ policy: b }, 0);
      const { port } = new URL(app.url);
      const readers = [0, 1].map(() => {
        const s = connect(Number(port), '127.0.0.1', () => s.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n'));
        s.pause(); // never reads
        s.on('error', () => {});
        return s;
      });
      try {
        await expect.poll(() => app.stats.served).toBe(2);
        // Before: both places stayed held until the bytes drained, and every other request got 503.
        await expect.poll(() => b.running, { timeout: 3_000 }).toBe(0);
        expect((await fetch(`${app.url}/cheap`)).status).toBe(200);
      } finally {
        for (const s of readers) s.destroy();
      }
    });

    it('a pipeline that times out or finds its circuit open before admitting sheds with 503, not a 500', async () => {
      const queue = pipeline(timeout(100), bulkhead({ maxConcurrent: 1, maxQueue: 5, policies: false }));
      const broken: Policy = {
        name: 'breaker',
        execute: () => Promise.reject(new BrokenCircuitError('upstream', Date.now() + 4_500)),
      };
      const held = gate();
      const app = await serve({ policy: (req) => (req.url.startsWith('/work') ? queue : broken) }, held.closed);
      const first = fetch(`${app.url}/work`);
      await expect.poll(() => app.stats.running).toBe(1);
      // Waited in the queue past the pipeline's timeout: overloaded, come back later.
      const waited = await fetch(`${app.url}/work`);
      expect(waited.status).toBe(503);
      expect(waited.headers.get('retry-after')).toBe('1');
      expect(await waited.json()).toMatchObject({ type: 'urn:holdfast:problem:overloaded', code: 'E_TIMEOUT' });
      const open = await fetch(`${app.url}/cheap`);
      expect(open.status).toBe(503);
      expect(Number(open.headers.get('retry-after'))).toBeGreaterThanOrEqual(4);
      expect(Number(open.headers.get('retry-after'))).toBeLessThanOrEqual(5);
      expect(await open.json()).toMatchObject({ code: 'E_CIRCUIT_OPEN' });
      expect(app.stats.running).toBe(1); // all of it while the first ran
      held.open();
      expect((await first).status).toBe(200);
    });

    it('per route: a policy picked per request; undefined lets a route through', async () => {
      const heavy = bulkhead({ maxConcurrent: 1, policies: false });
      const held = gate();
      const app = await serve({ policy: (req) => (req.url.startsWith('/work') ? heavy : undefined) }, held.closed);
      const first = fetch(`${app.url}/work`);
      await expect.poll(() => heavy.running).toBe(1);
      const both = [first, fetch(`${app.url}/work`)];
      const cheap = await Promise.all(Array.from({ length: 10 }, () => fetch(`${app.url}/cheap`)));
      expect(cheap.every((r) => r.status === 200)).toBe(true);
      expect(heavy.running).toBe(1); // the cheap ones went through while /work held its only place
      held.open();
      expect((await Promise.all(both)).map((r) => r.status).sort()).toEqual([200, 503]);
    });

    it('a client that hangs up while its handler runs does not free the place until the handler ends', async () => {
      const b = bulkhead({ maxConcurrent: 1, policies: false });
      const held = gate();
      const app = await serve({ policy: b }, held.closed);
      // Before: each hang-up freed the place at once, and 20 such clients ran 12 handlers at once behind maxConcurrent 1.
      const caller = new AbortController();
      const first = fetch(`${app.url}/work`, { signal: caller.signal }).catch(() => 'aborted');
      await expect.poll(() => app.stats.running).toBe(1);
      caller.abort();
      expect(await first).toBe('aborted');
      await sleep(50);
      expect(b.running).toBe(1);
      expect((await fetch(`${app.url}/work`)).status).toBe(503);
      expect(app.stats.peak).toBe(1);
      // The handler ends its response (to nobody): the place is free again.
      held.open();
      await expect.poll(() => app.stats.served, { timeout: 3_000 }).toBe(1);
      await expect.poll(() => b.running).toBe(0);
      expect((await fetch(`${app.url}/cheap`)).status).toBe(200);
    });

    it('holdAfterHangUp bounds how long a hung-up request keeps its place when its handler never ends', async () => {
      const b = bulkhead({ maxConcurrent: 1, policies: false });
      const app = await serve({ policy: b, holdAfterHangUp: 100 }, 1_500);
      const caller = new AbortController();
      const first = fetch(`${app.url}/work`, { signal: caller.signal }).catch(() => 'aborted');
      await expect.poll(() => app.stats.running).toBe(1);
      caller.abort();
      await first;
      await expect.poll(() => b.running).toBe(0);
      expect(app.stats.running).toBe(1); // still running, past its hold
    });

    it('a client that hangs up while queued leaves the queue, and its request never runs', async () => {
      const b: Bulkhead = bulkhead({ maxConcurrent: 1, maxQueue: 10, policies: createPolicyRegistry() });
      const held = gate();
      const app = await serve({ policy: b }, held.closed);
      const first = fetch(`${app.url}/work`);
      await expect.poll(() => b.running).toBe(1);
      const callers = Array.from({ length: 5 }, () => new AbortController());
      const queued = callers.map((c) => fetch(`${app.url}/work`, { signal: c.signal }).catch(() => 'aborted'));
      await expect.poll(() => b.queued).toBe(5);
      for (const c of callers) c.abort();
      await expect.poll(() => b.queued).toBe(0);
      expect(await Promise.all(queued)).toEqual(Array(5).fill('aborted'));
      expect(app.stats.running).toBe(1); // they left while the first still ran
      held.open();
      expect((await first).status).toBe(200);
      await sleep(50);
      expect(app.stats.served).toBe(1);
      expect(b.running).toBe(0);
    });
  });
}

describe('load shedding options', () => {
  it('refuses a missing or bad policy when the middleware is made', async () => {
    expect(() => expressShedding({} as never)).toThrow(/policy/);
    expect(() => expressShedding({ policy: bulkhead({ maxConcurrent: 1, policies: false }), retryAfter: -1 })).toThrow(
      /retryAfter/,
    );
    expect(() =>
      expressShedding({ policy: bulkhead({ maxConcurrent: 1, policies: false }), holdAfterHangUp: -1 }),
    ).toThrow(/holdAfterHangUp/);
    const app = Fastify();
    await expect(app.register(fastifyShedding, { policy: 'nope' } as never).ready()).rejects.toThrow(/policy/);
    // The message says what a policy is (it was "policy Invalid input").
    expect(() => expressShedding({ policy: {} as never })).toThrow(/policy must be a Policy/);
    // A misspelt option is refused on Fastify as on Express (it was silently dropped).
    const typo = Fastify();
    const policy = bulkhead({ maxConcurrent: 1, policies: false });
    await expect(typo.register(fastifyShedding, { policy, retryafter: 5 } as never).ready()).rejects.toThrow(
      /retryafter is not a known option/,
    );
    const prefixed = Fastify();
    await expect(prefixed.register(fastifyShedding, { policy, prefix: '/api' }).ready()).resolves.toBeDefined();
  });
});

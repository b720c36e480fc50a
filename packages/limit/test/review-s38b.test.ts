import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { LimitStoreUnavailableError, tokenBucket } from '../src/index.js';
import { redisRateLimiter } from '../src/redis.js';

/**
 * Outside review, session 38b, of the Redis rate limiter on a real redis-server of the test's own
 * (loopback, free port; only its PID is signalled). Each `it` is one bug a user hits, red on the
 * current code.
 */
const clients: Redis[] = [];
const connect = async (server: RedisServer): Promise<Redis> => {
  const c = new Redis(server.port, server.host, { retryStrategy: () => 50 });
  c.on('error', () => {});
  clients.push(c);
  if (c.status !== 'ready') await new Promise((r) => c.once('ready', r));
  return c;
};
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await stopAllRedis();
});

describe('review s38b: redisRateLimiter', () => {
  it('a fresh key of a limit of 6 or 7 a second says remaining 4 (of 6) / 5 (of 7) and a reset twice too long after its first call, where tokenBucket() says 5 / 6', async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    const client = await connect(server);
    const seen: Record<string, { remaining: number; reset: number }> = {};
    const want: Record<string, { remaining: number; reset: number }> = {};
    for (const limit of [6, 7]) {
      const redis = redisRateLimiter({ client, limit, interval: 1000, name: `fresh-${limit}`, policies: false });
      const local = tokenBucket({ limit, interval: 1000, policies: false });
      // The first call of a client (a fresh key): the RateLimit header shows what take() says.
      const d = await redis.take('203.0.113.7');
      seen[limit] = { remaining: d.remaining, reset: d.reset };
      const l = local.take('203.0.113.7');
      want[limit] = { remaining: l.remaining, reset: l.reset };
    }
    // README: one call of a fresh key of 100 says remaining=99; the client may indeed send 5 (6) more at once.
    expect(seen).toEqual(want);
  });

  it('eleven limiters on one client (login, signup, api...) print a MaxListenersExceededWarning "memory leak" at the first Redis outage', async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    const client = await connect(server);
    const limiters = Array.from({ length: 11 }, (_, i) =>
      redisRateLimiter({
        client,
        limit: 5,
        interval: 60_000,
        name: `route-${i}`,
        commandTimeout: 200,
        policies: false,
      }),
    );
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
    process.on('warning', onWarning);
    try {
      await server.kill(); // Redis down: the client reconnects, each decision waits for 'ready'
      await new Promise((r) => setTimeout(r, 100));
      expect(client.status).not.toBe('ready');
      // One call on each limit during the outage (fail-open: all let through).
      const decisions = await Promise.all(limiters.map((l) => l.take('k')));
      expect(decisions.every((d) => d.allowed)).toBe(true);
      await new Promise((r) => setTimeout(r, 50)); // warnings are emitted on the next tick
    } finally {
      process.off('warning', onWarning);
    }
    // ReadyWait exists so that waiting decisions add one 'ready' listener, not one each ("a listener
    // each would pass Node's limit of 10 at the first busy outage and warn of a leak"): but it is one
    // per limiter, and a service with more than ten limits on its one client warns of a leak.
    expect(warnings.filter((w) => w.includes('MaxListenersExceededWarning'))).toEqual([]);
  });

  it("a limiter whose callers were just refused with E_STORE_UNAVAILABLE (Redis stalled past its commandTimeout) reports status 'pass', because another limiter on the client was answered after", async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    const client = await connect(server);
    const other = await connect(server);
    // A login limit that must not be bypassed (closed, tight timeout) and an API limit (open, generous).
    const login = redisRateLimiter({
      client,
      limit: 5,
      interval: 60_000,
      name: 'login',
      onRedisError: 'closed',
      commandTimeout: 50,
      policies: false,
    });
    const api = redisRateLimiter({
      client,
      limit: 100,
      interval: 1000,
      name: 'api',
      commandTimeout: 2000,
      policies: false,
    });
    expect((await login.take('alice')).allowed).toBe(true);
    // Redis stalls 300 ms (another client's slow script): both decisions wait behind it.
    const stall = other.eval(
      "local t = redis.call('TIME') local s = t[1] * 1e6 + t[2] repeat t = redis.call('TIME') until t[1] * 1e6 + t[2] - s > 300000 return 1",
      0,
    );
    await new Promise((r) => setTimeout(r, 20));
    const [loginCall, apiCall] = await Promise.allSettled([login.take('alice'), api.take('alice')]);
    await stall;
    // login refused its caller (503): Redis did not answer within 50 ms. api was answered (late, within 2 s).
    expect(loginCall.status).toBe('rejected');
    expect((loginCall as PromiseRejectedResult).reason).toBeInstanceOf(LimitStoreUnavailableError);
    expect(apiCall.status).toBe('fulfilled');
    // The health report lists each limiter by name: login's last decision failed, its storeErrors went
    // up, yet it reports pass (the flag is the client's, cleared by api's answer). The status exists
    // for exactly this: "a frozen Redis stays ready" while decisions fail.
    expect(login.snapshot()).toMatchObject({ storeErrors: 1, status: 'warn' });
  });
});

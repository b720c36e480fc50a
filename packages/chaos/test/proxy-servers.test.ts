import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { type FaultProxy, faultProxy } from '../src/index.js';

const proxies: FaultProxy[] = [];
const clients: (Redis | pg.Client)[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) {
    if (c instanceof Redis) c.disconnect();
    else await c.end().catch(() => {});
  }
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

async function proxyTo(port: number): Promise<FaultProxy> {
  const p = await faultProxy({ target: { port } });
  proxies.push(p);
  return p;
}

describe.skipIf(!redisAvailable())('faultProxy in front of redis-server, seen by ioredis', () => {
  let redis: RedisServer;
  let direct: Redis;
  beforeAll(async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
    direct = new Redis(redis.port, '127.0.0.1');
  });
  afterAll(async () => {
    direct.disconnect();
    await stopAllRedis();
  });

  /** A client through the proxy that neither reconnects nor resends: each fault shows as it is. */
  function client(p: FaultProxy, errors: string[] = [], commandTimeout = 300): Redis {
    const c = new Redis(p.port, '127.0.0.1', {
      commandTimeout,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      autoResendUnfulfilledCommands: false,
    });
    c.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    clients.push(c);
    return c;
  }

  it('a reset is an ECONNRESET to ioredis, and the pending command fails', async () => {
    const p = await proxyTo(redis.port);
    const errors: string[] = [];
    const c = client(p, errors);
    expect(await c.ping()).toBe('PONG');
    p.add({ type: 'latency', latency: 200, name: 'slow' });
    const pending = c.ping().catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 50));
    p.add({ type: 'reset' });
    expect(await pending).toBeInstanceOf(Error);
    expect(errors).toContain('ECONNRESET');
  });

  it('a blackhole is a timeout: the command never answers, and works again once lifted', async () => {
    const p = await proxyTo(redis.port);
    const c = client(p);
    expect(await c.ping()).toBe('PONG');
    const hole = p.add({ type: 'blackhole' });
    await expect(c.get('k')).rejects.toThrow(/timed out/i);
    hole.remove();
    // The held command was delivered late; a new connection sees a server that is fine.
    const fresh = client(p);
    expect(await fresh.ping()).toBe('PONG');
  });

  it('a dropped reply is a lost reply: the command ran on the server, the client never heard', async () => {
    const p = await proxyTo(redis.port);
    const c = client(p);
    expect(await c.ping()).toBe('PONG');
    p.add({ type: 'drop', chunks: 1 });
    await expect(c.incr('lost-reply')).rejects.toThrow(/timed out/i);
    expect(await direct.get('lost-reply')).toBe('1');
  });

  it('latency, slicing and a byte limit as ioredis sees them', async () => {
    const p = await proxyTo(redis.port);
    const errors: string[] = [];
    // 10,000 bytes in 1,429 slices, each a turn of the event loop: on a loaded machine that
    // took longer than the other tests' 300 ms command timeout (seen in a run beside five others).
    const c = client(p, errors, 10_000);
    await c.set('big', 'v'.repeat(10_000));
    p.add({ type: 'slicer', size: 7, delay: 0 });
    expect(await c.get('big')).toHaveLength(10_000);
    p.clear();
    p.add({ type: 'limit', bytes: 100 });
    await expect(c.get('big')).rejects.toThrow();
  });
});

describe('faultProxy in front of PostgreSQL (127.0.0.1:5432), seen by pg', () => {
  async function client(p: FaultProxy, options: pg.ClientConfig = {}): Promise<{ c: pg.Client; errors: string[] }> {
    const c = new pg.Client({ host: '127.0.0.1', port: p.port, user: 'postgres', database: 'test', ...options });
    const errors: string[] = [];
    c.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    clients.push(c);
    await c.connect();
    return { c, errors };
  }

  it('a reset is an ECONNRESET to pg, the query in flight fails with it', async () => {
    const p = await proxyTo(5432);
    const { c } = await client(p);
    expect((await c.query('select 1 as one')).rows).toEqual([{ one: 1 }]);
    const pending = c.query('select pg_sleep(0.3)').catch((e: NodeJS.ErrnoException) => e);
    await new Promise((r) => setTimeout(r, 50));
    p.resetAll();
    expect(await pending).toMatchObject({ code: 'ECONNRESET' });
  });

  it('a blackhole is a timeout (query_timeout); a new connection after it lifts works', async () => {
    const p = await proxyTo(5432);
    const { c } = await client(p, { query_timeout: 300 });
    const hole = p.add({ type: 'blackhole' });
    await expect(c.query('select 1')).rejects.toThrow(/timeout/i);
    hole.remove();
    const { c: fresh } = await client(p);
    expect((await fresh.query('select 2 as two')).rows).toEqual([{ two: 2 }]);
  });

  it('a dropped reply is lost: the insert committed, the client timed out', async () => {
    const p = await proxyTo(5432);
    const { c } = await client(p, { query_timeout: 300 });
    const direct = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' });
    clients.push(direct);
    await direct.connect();
    const table = `chaos_lost_reply_${process.pid}`;
    await direct.query(`create table if not exists ${table} (id text)`);
    try {
      p.add({ type: 'drop', chunks: 1 });
      await expect(c.query(`insert into ${table} values ('one')`)).rejects.toThrow(/timeout/i);
      // The reply was dropped, not the request: the row is there for anyone who looks directly.
      expect((await direct.query(`select count(*)::int as n from ${table}`)).rows).toEqual([{ n: 1 }]);
    } finally {
      await direct.query(`drop table ${table}`);
    }
  });
});

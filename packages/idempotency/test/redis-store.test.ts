import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createBus, type EventOf } from '@holdfast/core';
import { Cluster, type Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { type ClaimResult, idempotent, type RedisStore, redisStore } from '../src/index.js';
import { storeContract } from './contract.js';
import { connect, disconnectAll, sleep, watchCommands } from './redis.js';

function token(result: ClaimResult): string {
  if (result.status !== 'claimed') throw new Error(`expected claimed, got ${result.status}`);
  return result.token;
}

describe.skipIf(!redisAvailable())('redisStore() on a real redis-server', () => {
  let server: RedisServer;
  let client: Redis;
  let admin: Redis;

  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
    client = connect(server);
    admin = connect(server);
  });
  afterAll(async () => {
    disconnectAll();
    await stopAllRedis();
  });

  storeContract('redisStore', () => ({
    store: redisStore({ client, prefix: `t:${randomUUID()}:` }),
    elapse: sleep,
    lease: 300,
  }));

  it('gives every key it writes a TTL', async () => {
    const prefix = `ttl:${randomUUID()}:`;
    const store = redisStore({ client, prefix });
    const done = await store.claim('done', 'fp', 60_000);
    await store.complete('done', token(done), { kind: 'value', value: 'v' }, 3_600_000);
    await store.claim('running', 'fp', 30_000);
    await store.claim('taken-over', 'fp', 50);
    await sleep(70);
    await store.claim('taken-over', 'fp', 20_000);
    const released = await store.claim('released', 'fp', 1_000);
    await store.release('released', token(released));

    const keys = await admin.keys(`${prefix}*`);
    const [doneKey, running, takenOver] = ['done', 'running', 'taken-over'].map((k) => store.keyOf(k));
    expect(keys.sort()).toEqual([doneKey, running, takenOver].sort());
    const ttls = Object.fromEntries(await Promise.all(keys.map(async (k) => [k, await admin.pttl(k)] as const)));
    expect(ttls[doneKey as string]).toBeGreaterThan(3_500_000);
    expect(ttls[running as string]).toBeGreaterThan(55_000); // two leases
    expect(ttls[running as string]).toBeLessThanOrEqual(60_000);
    expect(ttls[takenOver as string]).toBeGreaterThan(35_000);
  });

  it('takes one round trip to claim, one to complete, one to replay and one to release (counted by MONITOR)', async () => {
    const store = redisStore({ client, prefix: `rt:${randomUUID()}:` });
    const watch = await watchCommands(server);
    try {
      // The first use of each script may cost an extra EVAL (NOSCRIPT): warm them up.
      await store.complete('warm-up', 'no-token', { kind: 'value', value: 0 }, 1_000);
      await store.release('warm-up', 'no-token');
      await store.claim('warm-up', 'fp', 1_000);

      const [claim, claimSent] = await watch.commandsDuring(() => store.claim('order-1', 'fp', 10_000));
      expect(claimSent).toEqual(['evalsha']);
      const [stored, completeSent] = await watch.commandsDuring(() =>
        store.complete('order-1', token(claim), { kind: 'value', value: { paid: true } }, 60_000),
      );
      expect(stored).toBe(true);
      expect(completeSent).toEqual(['evalsha']);
      const [replay, replaySent] = await watch.commandsDuring(() => store.claim('order-1', 'fp', 10_000));
      expect(replay.status).toBe('completed');
      expect(replaySent).toEqual(['evalsha']);
      const second = await store.claim('order-2', 'fp', 10_000);
      const [released, releaseSent] = await watch.commandsDuring(() => store.release('order-2', token(second)));
      expect(released).toBe(true);
      expect(releaseSent).toEqual(['evalsha']);

      // And a whole idempotent() run: one round trip to claim, one to complete; a repeat, one.
      let runs = 0;
      const job = idempotent(async (_id: string) => ++runs, { store, key: (id) => id });
      const [, firstRun] = await watch.commandsDuring(() => job('job-1'));
      const [, repeat] = await watch.commandsDuring(() => job('job-1'));
      expect([firstRun, repeat, runs]).toEqual([['evalsha', 'evalsha'], ['evalsha'], 1]);
    } finally {
      watch.close();
    }
  });

  it('after a server restart (scripts flushed) falls back to EVAL once, then EVALSHA again', async () => {
    const [own] = (await startRedis(1)) as [RedisServer];
    const ownClient = connect(own);
    const store = redisStore({ client: ownClient, prefix: 'restart:' });
    expect((await store.claim('before', 'fp', 10_000)).status).toBe('claimed');
    await own.restart();
    await ownClient.ping(); // reconnected
    const watch = await watchCommands(own);
    try {
      const [first, sent] = await watch.commandsDuring(() => store.claim('after', 'fp', 10_000));
      expect(first.status).toBe('claimed');
      // A new connection: its eviction policy read once (INFO), then the script found again.
      expect(sent).toEqual(['info', 'evalsha', 'eval']);
      // The restart lost the dataset (no persistence in tests): the old key is free again.
      expect((await store.claim('before', 'fp', 10_000)).status).toBe('claimed');
      const [, again] = await watch.commandsDuring(() => store.claim('after-2', 'fp', 10_000));
      expect(again).toEqual(['evalsha']);
    } finally {
      watch.close();
    }
  });

  describe('when Redis fails', () => {
    it('killed: fails with E_STORE_UNAVAILABLE within the command timeout, although the client would queue and retry', async () => {
      const [own] = (await startRedis(1)) as [RedisServer];
      const store = redisStore({ client: connect(own), commandTimeout: 300, prefix: 'kill:' });
      expect((await store.claim('a', 'fp', 10_000)).status).toBe('claimed');
      await own.kill();
      const error = await store.claim('b', 'fp', 10_000).catch((e: unknown) => e);
      expect(error).toMatchObject({ code: 'E_STORE_UNAVAILABLE', name: 'StoreUnavailableError', operation: 'claim' });
      // Our timer, not ioredis' 20 reconnect attempts (about 10 s), decides when the caller hears.
      // Sent before the client noticed the dead socket, it gets no answer or a connection error.
      expect((error as Error).message).toMatch(/^redisStore: claim of key "b" failed: /);
      // Now the client knows, and would park the command in its offline queue: we do not send it.
      await expect(store.claim('c', 'fp', 10_000)).rejects.toMatchObject({
        code: 'E_STORE_UNAVAILABLE',
        message: expect.stringMatching(
          /^redisStore: claim of key "c" failed: Redis is not connected \(client status "\w+"\) and did not reconnect within 300 ms$/,
        ),
      });
      await own.restart();
      await expect(store.claim('b', 'fp', 10_000)).resolves.toMatchObject({ status: 'claimed' });
    });

    it('paused (hung, connection open): fails after the command timeout instead of hanging, then recovers', async () => {
      const [own] = (await startRedis(1)) as [RedisServer];
      const store = redisStore({ client: connect(own), commandTimeout: 300, prefix: 'pause:' });
      await store.claim('warm', 'fp', 10_000);
      own.pause();
      try {
        await expect(store.claim('hung', 'fp', 10_000)).rejects.toMatchObject({
          code: 'E_STORE_UNAVAILABLE',
          message: 'redisStore: claim of key "hung" failed: Redis did not answer within 300 ms',
        });
      } finally {
        own.resume();
      }
      expect((await store.claim('after', 'fp', 10_000)).status).toBe('claimed');
      // The hung server ran the abandoned claim when it woke, and the withdrawal queued behind it:
      // the key is free, not held for a lease by a claim nobody owns.
      expect((await store.claim('hung', 'fp', 10_000)).status).toBe('claimed');
    });

    it('connects a lazyConnect client on first use', async () => {
      const [own] = (await startRedis(1)) as [RedisServer];
      const lazy = connect(own, { lazyConnect: true });
      expect(lazy.status).toBe('wait');
      const store = redisStore({ client: lazy, commandTimeout: 2_000 });
      expect((await store.claim('k', 'fp', 1_000)).status).toBe('claimed');
    });

    it('fails at once on a client that was closed', async () => {
      const [own] = (await startRedis(1)) as [RedisServer];
      const closed = connect(own);
      await closed.ping();
      const ended = once(closed, 'end');
      await closed.quit();
      await ended;
      const store = redisStore({ client: closed, commandTimeout: 60_000 });
      await expect(store.claim('k', 'fp', 1_000)).rejects.toMatchObject({
        code: 'E_STORE_UNAVAILABLE',
        message: expect.stringContaining('the Redis client ended'),
      });
    });

    it('fail-closed does not run the function; fail-open runs it unprotected; both report storeError', async () => {
      const [own] = (await startRedis(1)) as [RedisServer];
      const ownClient = connect(own);
      await ownClient.ping();
      await own.kill();
      const bus = createBus();
      const events: EventOf<'idempotency.storeError'>[] = [];
      bus.on('idempotency.storeError', (e) => events.push(e));
      let runs = 0;
      const job = async () => ++runs;

      const closed = idempotent(job, {
        store: redisStore({ client: ownClient, commandTimeout: 200 }),
        key: () => 'job-1',
        bus,
      });
      await expect(closed({})).rejects.toMatchObject({ code: 'E_STORE_UNAVAILABLE' });
      expect(runs).toBe(0);

      const open = idempotent(job, {
        store: redisStore({ client: ownClient, commandTimeout: 200, onStoreError: 'fail-open' }),
        key: () => 'job-1',
        bus,
      });
      await expect(open({})).resolves.toBe(1);
      expect(events.map((e) => [e.operation, e.failOpen, e.code])).toEqual([
        ['claim', false, 'E_STORE_UNAVAILABLE'],
        ['claim', true, 'E_STORE_UNAVAILABLE'],
      ]);
    });

    it('stopped mid-run: callers get a clear error, and nothing is marked complete that did not complete', async () => {
      const [own] = (await startRedis(1)) as [RedisServer];
      const ownClient = connect(own);
      const ownAdmin = connect(own);
      const bus = createBus();
      const storeErrors: EventOf<'idempotency.storeError'>[] = [];
      bus.on('idempotency.storeError', (e) => storeErrors.push(e));
      const midStore = redisStore({ client: ownClient, commandTimeout: 250, prefix: 'mid:' });
      const ran = new Set<string>();
      let hang: (() => void) | undefined;
      const work = idempotent(
        async (id: string) => {
          if (id === 'fails-while-down') {
            own.pause(); // the store goes away while this call runs
            hang?.();
            throw new Error('payment declined');
          }
          ran.add(id);
          return id;
        },
        { store: midStore, key: (id) => id, bus },
      );
      expect(await work('a')).toBe('a');
      expect(await work('b')).toBe('b');
      await expect(work('fails-while-down')).rejects.toThrow('payment declined'); // the real error, not a store error
      const outcomes = await Promise.allSettled(['c', 'd'].map((id) => work(id)));
      for (const o of outcomes)
        expect(o).toMatchObject({ status: 'rejected', reason: { code: 'E_STORE_UNAVAILABLE' } });
      expect(storeErrors.map((e) => [e.key, e.operation])).toEqual([
        ['fails-while-down', 'release'],
        ['c', 'claim'],
        ['d', 'claim'],
      ]);
      own.resume();
      await ownAdmin.ping();
      const completed: string[] = [];
      for (const redisKey of await ownAdmin.keys('mid:*')) {
        if ((await ownAdmin.hget(redisKey, 's')) === 'c') completed.push(redisKey);
      }
      expect(completed.sort()).toEqual([midStore.keyOf('a'), midStore.keyOf('b')].sort());
      expect([...ran].sort()).toEqual(['a', 'b']);
    });
  });

  it('works through an ioredis Cluster: the hash tag keeps each record in one slot', async () => {
    const [node] = (await startRedis(1, [
      '--cluster-enabled',
      'yes',
      '--cluster-announce-ip',
      '127.0.0.1',
      '--cluster-config-file',
      `/tmp/holdfast-idem-nodes-${randomUUID()}.conf`,
    ])) as [RedisServer];
    const setup = connect(node);
    await setup.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
    for (let i = 0; i < 200 && !(await setup.call('CLUSTER', 'INFO'))?.toString().includes('cluster_state:ok'); i++) {
      await sleep(50);
    }
    const cluster = new Cluster([{ host: node.host, port: node.port }]);
    cluster.on('error', () => {});
    try {
      const store: RedisStore = redisStore({ client: cluster, prefix: 'cl:' });
      const claim = await store.claim('user:42:order', 'fp', 10_000);
      await store.complete('user:42:order', token(claim), { kind: 'value', value: 'ok' }, 60_000);
      const replay = await store.claim('user:42:order', 'fp', 10_000);
      expect(replay.status === 'completed' && replay.record.outcome).toEqual({ kind: 'value', value: 'ok' });
      expect(store.keyOf('user:42:order')).toMatch(/^cl:\{[\w-]{43}\}$/);
      const redisKey = store.keyOf('user:42:order');
      const tag = /\{([^}]+)\}$/.exec(redisKey)?.[1] as string;
      expect(await setup.call('CLUSTER', 'KEYSLOT', redisKey)).toBe(await setup.call('CLUSTER', 'KEYSLOT', tag));
    } finally {
      cluster.disconnect();
    }
  });

  it('idempotent(): 200 concurrent calls with one key run the function once; with wait, all get its result', async () => {
    const store = redisStore({ client, prefix: `conc:${randomUUID()}:` });
    let runs = 0;
    const job = idempotent(
      async () => {
        runs++;
        await sleep(100);
        return { receipt: 'r-1' };
      },
      { store, key: () => 'pay-1', wait: { timeout: 5_000, interval: 20 } },
    );
    const results = await Promise.all(Array.from({ length: 200 }, () => job(undefined)));
    expect(runs).toBe(1);
    expect(new Set(results.map((r) => JSON.stringify(r)))).toEqual(new Set(['{"receipt":"r-1"}']));
  });

  it('names the bad option', () => {
    expect(() => redisStore({ client: {} as never })).toThrow(/redisStore: client must be an ioredis client/);
    expect(() => redisStore({ client, commandTimeout: 0 })).toThrow(/commandTimeout/);
    expect(() => redisStore({ client, onStoreError: 'ignore' as never })).toThrow(/onStoreError/);
  });
});

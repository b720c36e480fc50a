import { randomUUID } from 'node:crypto';
import { HoldfastConfigError } from '@holdfast/core';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { type ClaimResult, memoryStore, redisStore } from '../src/index.js';
import { claimScript } from '../src/redis-scripts.js';
import { keySlot } from '../src/redis-store.js';
import { connect, disconnectAll, watchCommands } from './redis.js';

function token(result: ClaimResult): string {
  if (result.status !== 'claimed') throw new Error(`expected claimed, got ${result.status}`);
  return result.token;
}

const response = (bytes: number) =>
  ({ kind: 'response', status: 200, headers: {}, body: Buffer.alloc(bytes) }) as const;

describe('memoryStore() bounded by bytes', () => {
  it('keeps its records within maxBytes, evicting least recently used completed ones', async () => {
    const store = memoryStore({ maxBytes: 10 * 1_048_576 });
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 200; i++) {
      const key = `big-${i}`;
      await store.complete(key, token(await store.claim(key, 'fp', 60_000)), response(1_048_576), 3_600_000);
      expect(store.bytes).toBeLessThanOrEqual(10 * 1_048_576);
    }
    // 200 MiB went through; at most 10 MiB of it is held.
    expect(store.size).toBeLessThanOrEqual(10);
    expect(store.snapshot()).toMatchObject({ maxBytes: 10 * 1_048_576 });
    expect((await store.claim('big-199', 'fp', 60_000)).status).toBe('completed');
    expect((await store.claim('big-0', 'fp', 60_000)).status).toBe('claimed'); // evicted
    globalThis.gc?.();
    expect(process.memoryUsage().rss - before).toBeLessThan(150 * 1_048_576);
    store.dispose();
  });

  it('refuses one record larger than maxBytes, naming its size, and keeps the claim releasable', async () => {
    const store = memoryStore({ maxBytes: 1_000 });
    const t = token(await store.claim('k', 'fp', 60_000));
    await expect(store.complete('k', t, response(5_000), 60_000)).rejects.toMatchObject({
      code: 'E_IDEMPOTENCY_VALUE',
      message: expect.stringContaining('maxBytes of 1000'),
    });
    expect(await store.release('k', t)).toBe(true);
  });

  it('has a sane default and refuses a bad one', () => {
    expect(memoryStore().maxBytes).toBe(64 * 1_048_576);
    expect(() => memoryStore({ maxBytes: 0 })).toThrow(HoldfastConfigError);
  });
});

describe.skipIf(!redisAvailable())('redisStore() hardening on a real redis-server', () => {
  let server: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    // A replica's full sync starts at once, not after the 5 s a diskless master waits for more replicas.
    [server] = (await startRedis(1, ['--repl-diskless-sync-delay', '0'])) as [RedisServer];
    client = connect(server);
  });
  afterAll(async () => {
    disconnectAll();
    await stopAllRedis();
  });

  it('refuses a prefix with braces, spaces or control characters', () => {
    for (const prefix of ['a{', 'b}', 'with space', 'tab\t']) {
      expect(() => redisStore({ client, prefix })).toThrow(/prefix/);
    }
    expect(() => redisStore({ client, prefix: 'app:idem:' })).not.toThrow();
  });

  it('property: any key maps to one Cluster-safe Redis key; distinct keys never share one', () => {
    const store = redisStore({ client, prefix: 'p:' });
    fc.assert(
      fc.property(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' }), (a, b) => {
        const ka = store.keyOf(a);
        expect(ka).toMatch(/^p:\{[\w-]{43}\}$/); // one hash tag, closed at the end
        if (a !== b) expect(ka).not.toBe(store.keyOf(b));
      }),
    );
    expect(store.keyOf('}{')).not.toBe(store.keyOf('{}'));
  });

  it('refuses a value over maxValueBytes before sending it, naming the size', async () => {
    const store = redisStore({ client, prefix: `v:${randomUUID()}:`, maxValueBytes: 1_000 });
    const t = token(await store.claim('k', 'fp', 60_000));
    await expect(store.complete('k', t, response(5_000), 60_000)).rejects.toMatchObject({
      code: 'E_IDEMPOTENCY_VALUE',
      message: expect.stringMatching(/50\d\d bytes encoded, over .*maxValueBytes of 1000/),
    });
    expect(client.status).toBe('ready'); // nothing was sent, nothing to resend
    expect(await store.release('k', t)).toBe(true);
  });

  it('a claim resent with its own token (as ioredis does after a reconnect) is claimed again, not in progress', async () => {
    const store = redisStore({ client, prefix: `r:${randomUUID()}:` });
    const t = token(await store.claim('k', 'fp', 60_000));
    const resent = (await client.callBuffer(
      'eval',
      claimScript.source,
      1,
      store.keyOf('k'),
      'fp',
      60_000,
      t,
    )) as Buffer[];
    expect(resent[0]?.toString()).toBe('claimed');
    expect((await store.claim('k', 'fp', 60_000)).status).toBe('inProgress'); // another token still waits
    expect(await store.complete('k', t, { kind: 'value', value: 1 }, 60_000)).toBe(true);
    expect(await store.complete('k', t, { kind: 'value', value: 1 }, 60_000)).toBe(true); // resent completion
  });

  it('a completion whose claim was lost (failover, flushed) writes the record; one another token holds is refused', async () => {
    const store = redisStore({ client, prefix: `f:${randomUUID()}:` });
    const lost = token(await store.claim('lost', 'fp', 60_000));
    await client.del(store.keyOf('lost'));
    expect(await store.complete('lost', lost, { kind: 'value', value: 'ran once' }, 60_000)).toBe(true);
    const replay = await store.claim('lost', 'fp', 60_000);
    expect(replay.status === 'completed' && replay.record.outcome).toEqual({ kind: 'value', value: 'ran once' });

    const first = token(await store.claim('taken', 'fp', 60_000));
    await client.del(store.keyOf('taken'));
    const second = token(await store.claim('taken', 'fp', 60_000));
    expect(await store.complete('taken', first, { kind: 'value', value: 'late' }, 60_000)).toBe(false);
    expect(await store.complete('taken', second, { kind: 'value', value: 'owner' }, 60_000)).toBe(true);
  });

  it('waitForReplicas: a write no replica acknowledges fails (and the claim is withdrawn); with a replica it passes', async () => {
    const prefix = `w:${randomUUID()}:`;
    const store = redisStore({ client, prefix, waitForReplicas: { replicas: 1, timeoutMs: 100 } });
    await expect(store.claim('k', 'fp', 60_000)).rejects.toMatchObject({
      code: 'E_STORE_UNAVAILABLE',
      message: expect.stringContaining('0 of 1 replicas'),
    });
    const [replica] = (await startRedis(1, ['--replicaof', '127.0.0.1', String(server.port)])) as [RedisServer];
    const admin = connect(replica);
    for (let i = 0; i < 100 && !(await admin.info('replication')).includes('master_link_status:up'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    // Same records, a WAIT long enough for a loaded machine.
    const patient = redisStore({ client, prefix, waitForReplicas: { replicas: 1, timeoutMs: 1_500 } });
    const t = token(await patient.claim('k', 'fp', 60_000)); // the refused claim was withdrawn
    expect(await patient.complete('k', t, { kind: 'value', value: 1 }, 60_000)).toBe(true);
    expect(await admin.hget(patient.keyOf('k'), 's')).toBe('c'); // on the replica before the answer
    await replica.stop();
  }, 30_000);

  it('waitForReplicas: writes made while a WAIT is on the wire share the next one; each on the replica once counted', async () => {
    // At most one WAIT is on the wire per node (each holds the connection until its replicas
    // answer). So writes queue behind it, and one confirmation counts them all: 40 claims at once
    // on a store that has not seen its replica yet send 2 WAITs, not 40.
    const [replica] = (await startRedis(1, ['--replicaof', '127.0.0.1', String(server.port)])) as [RedisServer];
    const admin = connect(replica);
    for (let i = 0; i < 100 && !(await admin.info('replication')).includes('master_link_status:up'); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const own = connect(server);
    const prefix = `b:${randomUUID()}:`;
    const store = redisStore({ client: own, prefix, waitForReplicas: { replicas: 1, timeoutMs: 1_500 } });
    // The store has run the claim script (a mismatch, which writes nothing, so nothing is confirmed
    // and the node stays unseen): the claims below are not held behind its first use.
    await redisStore({ client: own, prefix }).claim('other', 'fp', 60_000);
    expect((await store.claim('other', 'another fp', 60_000)).status).toBe('mismatch');
    const watch = await watchCommands(server);
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
    const [seen, commands] = await watch.commandsDuring(() =>
      Promise.all(
        keys.map(async (key) => {
          const claimed = await store.claim(key, 'fp', 60_000);
          return [claimed.status, await admin.hget(store.keyOf(key), 's')];
        }),
      ),
    );
    expect(seen).toEqual(keys.map(() => ['claimed', 'p']));
    expect(commands.filter((c) => c === 'wait')).toHaveLength(2);
    watch.close();
    await replica.stop();
  }, 30_000);

  it('waitForReplicas: a completion for a key another token holds answers false, not a failed write', async () => {
    // Its script writes nothing, so nothing is to be confirmed. It was confirmed all the same, and
    // the confirmation counts 0 for a record its script did not write: E_STORE_UNAVAILABLE, which
    // the middleware retries for completeTimeoutMs, then reports as a store error instead of a
    // stale completion.
    const [replica] = (await startRedis(1, ['--replicaof', '127.0.0.1', String(server.port)])) as [RedisServer];
    const online = new RegExp(`port=${replica.port},state=online`);
    for (let i = 0; i < 200 && !online.test(await client.info('replication')); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const admin = connect(replica);
    const prefix = `s:${randomUUID()}:`;
    const waitForReplicas = { replicas: 1, timeoutMs: 1_500 };
    const store = redisStore({ client, prefix, waitForReplicas });
    const t = token(await store.claim('k', 'fp', 60_000));
    // A store that has not confirmed this node yet runs the script alone, then confirms it.
    const other = redisStore({ client, prefix, waitForReplicas });
    expect(await other.complete('k', randomUUID(), { kind: 'value', value: 'stale' }, 60_000)).toBe(false);
    expect(await store.complete('k', t, { kind: 'value', value: 'owner' }, 60_000)).toBe(true);
    expect(await admin.hget(store.keyOf('k'), 's')).toBe('c');
    await replica.stop();
  }, 30_000);

  it('waitForReplicas with the replica gone: replays still answered, new keys refused at once, not one WAIT after another', async () => {
    // WAIT holds every command behind it on the connection. A master left without its replica (it
    // died; or the master is new after a failover) must not turn each store call into a 300 ms WAIT
    // queued behind the others: replays then time out too, and the whole service answers 503.
    const [master] = (await startRedis(1, ['--repl-diskless-sync-delay', '0'])) as [RedisServer];
    const [replica] = (await startRedis(1, ['--replicaof', '127.0.0.1', String(master.port)])) as [RedisServer];
    const admin = connect(replica);
    const linked = async () => {
      for (let i = 0; i < 200 && !(await admin.info('replication')).includes('master_link_status:up'); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await linked();
    const own = connect(master);
    // A replica just synced may take a moment to acknowledge its first WAIT: it does before the writes.
    const acknowledged = async () => {
      await own.set('warm', '1');
      return Number(await own.call('wait', '1', '300')) >= 1;
    };
    for (let i = 0; i < 100 && !(await acknowledged()); i++) await new Promise((r) => setTimeout(r, 50));
    const store = redisStore({
      client: own,
      prefix: `g:${randomUUID()}:`,
      commandTimeout: 1_000,
      waitForReplicas: { replicas: 1, timeoutMs: 300 },
    });
    const keys = Array.from({ length: 20 }, (_, i) => `done-${i}`);
    for (const key of keys) {
      const t = token(await store.claim(key, 'fp', 60_000));
      expect(await store.complete(key, t, { kind: 'value', value: key }, 60_000)).toBe(true);
    }
    await replica.kill();
    // The first call after it learns it (its WAIT comes back short), and is answered after 300 ms.
    expect(await store.claim('done-0', 'fp', 60_000)).toMatchObject({ status: 'completed' });
    // Then 40 replays and 10 new keys at once, twice.
    for (let round = 0; round < 2; round++) {
      const replays = Promise.allSettled([...keys, ...keys].map((key) => store.claim(key, 'fp', 60_000)));
      const fresh = Promise.allSettled(
        Array.from({ length: 10 }, (_, i) => store.claim(`new-${round}-${i}`, 'fp', 60_000)),
      );
      const answered = (await replays).filter((r) => r.status === 'fulfilled' && r.value.status === 'completed');
      expect(answered).toHaveLength(40);
      for (const refused of await fresh) {
        expect(refused).toMatchObject({ status: 'rejected', reason: { code: 'E_STORE_UNAVAILABLE' } });
      }
    }
    // Refused claims were withdrawn: once the replica is back, the same keys are claimed.
    await replica.restart();
    await admin.call('replicaof', '127.0.0.1', String(master.port));
    await linked();
    let claimed: ClaimResult | undefined;
    for (let i = 0; i < 20 && claimed?.status !== 'claimed'; i++) {
      claimed = await store.claim('new-1-0', 'fp', 60_000).catch(() => undefined);
      if (claimed?.status !== 'claimed') await new Promise((r) => setTimeout(r, 100));
    }
    expect(claimed?.status).toBe('claimed');
    expect(await store.complete('new-1-0', token(claimed as ClaimResult), { kind: 'value', value: 1 }, 60_000)).toBe(
      true,
    );
    expect(await admin.hget(store.keyOf('new-1-0'), 's')).toBe('c');
    await replica.stop();
    await master.stop();
  }, 60_000);

  it('knows the Cluster slot of its keys (CRC16 of the hash tag), as Redis computes it', () => {
    // Values from the Redis Cluster specification (test/idempotency-wait-replicas.test.ts asks Redis).
    expect(keySlot('123456789')).toBe(0x31c3 & 16383);
    expect(keySlot('foo')).toBe(12182);
    expect(keySlot('{user1000}.following')).toBe(keySlot('user1000'));
    expect(keySlot('foo{{bar}}zap')).toBe(keySlot('{bar')); // the tag ends at the first }
    expect(keySlot('foo{}{bar}')).not.toBe(keySlot('bar')); // an empty first tag: the whole key
  });
});

import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type RedisServer,
  redisAvailable,
  redisCommand,
  startRedis,
  stopAllRedis,
} from '../../../test/support/redis.js';
import { redisStore } from '../src/index.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

afterAll(() => stopAllRedis());

async function evals(client: Redis): Promise<number> {
  const info = await client.info('commandstats');
  return Number(/cmdstat_eval:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

describe.skipIf(!redisAvailable())(
  'waitForReplicas: a script flushed while the node is whole',
  { timeout: 30_000 },
  () => {
    it('20 claims and completions in the script+WAIT pipeline after SCRIPT FLUSH (EVALSHA answered NOSCRIPT inside it): all written, on the replica, each script sent once', async () => {
      const [master] = (await startRedis(1, ['--repl-diskless-sync-delay', '0'])) as [RedisServer];
      const [replica] = (await startRedis(1, ['--replicaof', '127.0.0.1', String(master.port)])) as [RedisServer];
      const client = new Redis(master.port, '127.0.0.1');
      const admin = new Redis(master.port, '127.0.0.1');
      const onReplica = new Redis(replica.port, '127.0.0.1');
      for (const c of [client, admin, onReplica]) c.on('error', () => {});
      try {
        while (!(await redisCommand(replica.port, ['INFO', 'replication'])).includes('master_link_status:up'))
          await sleep(50);
        while (Number(await admin.call('wait', '1', '300')) < 1) await admin.set('warm', '1');
        const store = redisStore({ client, prefix: 'flushp:', waitForReplicas: { replicas: 1, timeoutMs: 2_000 } });
        // Warm: both scripts known, the node whole (its WAIT came back whole): later writes pipeline.
        const warm = await store.claim('warm', 'fp', 60_000);
        if (warm.status !== 'claimed') throw new Error(warm.status);
        expect(await store.complete('warm', warm.token, { kind: 'value', value: 0 }, 60_000)).toBe(true);
        await admin.script('FLUSH');
        const before = await evals(admin);
        const results = await Promise.all(
          Array.from({ length: 20 }, async (_, n) => {
            const claim = await store.claim(`k${n}`, 'fp', 60_000);
            if (claim.status !== 'claimed') return claim.status;
            return (await store.complete(`k${n}`, claim.token, { kind: 'value', value: n }, 60_000))
              ? 'done'
              : 'refused';
          }),
        );
        expect(results).toEqual(Array(20).fill('done'));
        const onIt = await Promise.all(Array.from({ length: 20 }, (_, n) => onReplica.hget(store.keyOf(`k${n}`), 's')));
        expect(onIt).toEqual(Array(20).fill('c'));
        expect((await evals(admin)) - before).toBeLessThanOrEqual(2);
      } finally {
        client.disconnect();
        admin.disconnect();
        onReplica.disconnect();
      }
    });
  },
);

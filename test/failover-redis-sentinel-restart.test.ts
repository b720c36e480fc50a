import { describe, expect, it } from 'vitest';
import {
  type RedisServer,
  redisAvailable,
  redisCommand,
  type SentinelSetup,
  startSentinel,
  stopAllRedis,
} from './support/redis.js';
import { role, until } from './support/sentinel-load.js';

/**
 * The harness restarts a server of a Sentinel setup as a deployment does: from its own config
 * file, which Sentinel rewrites (`CONFIG REWRITE`) each time it makes the server a master or a
 * replica. Started from its first command line instead, a restarted server came back replicating
 * from the first master whatever the Sentinels had made of it since: the master they had
 * promoted since came back a replica of its own replica, a replication loop (every server a
 * replica with its link down, as failover-redis-sentinel.test.ts ended in 2 of 3 CI runs).
 */

/** The port `server` replicates from, or undefined for a master. */
async function replicaOf(server: RedisServer): Promise<number | undefined> {
  const info = await redisCommand(server.port, ['INFO', 'replication']);
  const port = /master_port:(\d+)/.exec(info)?.[1];
  return port === undefined ? undefined : Number(port);
}

/** Promotes `to` (the others cannot be chosen) and waits until every other server replicates from it. */
async function failoverTo(setup: SentinelSetup, to: RedisServer): Promise<void> {
  const servers = [setup.master, ...setup.replicas];
  for (const s of setup.replicas) {
    await redisCommand(s.port, ['CONFIG', 'SET', 'replica-priority', s === to ? '100' : '0']);
  }
  await until(async () =>
    (await redisCommand(setup.sentinels[0]?.port as number, ['SENTINEL', 'FAILOVER', setup.name])).startsWith('+OK'),
  );
  await until(async () => {
    for (const s of setup.sentinels) {
      const reply = await redisCommand(s.port, ['SENTINEL', 'GET-MASTER-ADDR-BY-NAME', setup.name]);
      if (!reply.endsWith(`\r\n${to.port}\r\n`)) return false;
    }
    for (const s of servers) if (s !== to && (await role(s)) !== 'slave/up') return false;
    return (await replicaOf(to)) === undefined;
  }, 30_000);
}

describe.skipIf(!redisAvailable())('a Sentinel setup: a server restarted after a failover', () => {
  it('the master the Sentinels promoted comes back a master, not a replica of its own replica (a loop)', async () => {
    const setup = await startSentinel({ replicas: 2, downAfterMs: 1_000, syncDelayMs: 0 });
    try {
      const promoted = setup.replicas[0] as RedisServer;
      await failoverTo(setup, promoted);
      await promoted.restart();
      // Empty (no persistence), as the master its rewritten config says it is.
      expect(await replicaOf(promoted)).toBeUndefined();
    } finally {
      await setup.stop();
    }
  }, 60_000);

  it('a replica, and the demoted old master, come back replicas of the master the Sentinels name', async () => {
    const setup = await startSentinel({ replicas: 2, downAfterMs: 1_000, syncDelayMs: 0 });
    try {
      const promoted = setup.replicas[0] as RedisServer;
      await failoverTo(setup, promoted);
      for (const s of [setup.replicas[1] as RedisServer, setup.master]) {
        await s.restart();
        expect({ port: s.port, replicaOf: await replicaOf(s) }).toEqual({ port: s.port, replicaOf: promoted.port });
      }
    } finally {
      await setup.stop();
      await stopAllRedis();
    }
  }, 60_000);
});

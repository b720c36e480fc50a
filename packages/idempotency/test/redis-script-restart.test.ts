import { describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable } from '../../../test/support/redis.js';
import { redisStore } from '../src/index.js';
import { connect, useRedisServer } from './redis.js';

/** EVAL and EVALSHA the server ran since it started (INFO commandstats). */
async function scriptCalls(server: RedisServer): Promise<{ eval: number; evalsha: number }> {
  const probe = connect(server);
  try {
    const info = await probe.info('commandstats');
    const calls = (name: string) => Number(new RegExp(`cmdstat_${name}:calls=(\\d+)`).exec(info)?.[1] ?? 0);
    return { eval: calls('eval'), evalsha: calls('evalsha') };
  } finally {
    probe.disconnect();
  }
}

describe.skipIf(!redisAvailable())(
  'redisStore after Redis restarted empty between two bursts',
  { timeout: 30_000 },
  () => {
    const redis = useRedisServer();

    it('200 claims after the restart (the client reconnected while no call was made): the claim script is sent once, not answered NOSCRIPT 200 times', async () => {
      const N = 200;
      const { server } = redis;
      const client = connect(server);
      const store = redisStore({ client, prefix: 'restart-burst:' });
      const before = await Promise.all(Array.from({ length: N }, (_, n) => store.claim(`a${n}`, 'fp', 60_000)));
      expect(before.every((r) => r.status === 'claimed')).toBe(true); // the script is known on the node
      // Listened for before the restart: a client that reconnected before restart() resolved had
      // already said 'ready', and a listener added then waited for good (CI: the test timed out).
      // Not events.once(): it rejects on the connection errors the client emits while the server is down.
      const ready = new Promise<void>((resolve) => client.once('ready', () => resolve()));
      await server.restart(); // empty: no record, no script
      await ready;
      const after = await Promise.all(Array.from({ length: N }, (_, n) => store.claim(`a${n}`, 'fp', 60_000)));
      // Every key is claimed again (the restart lost the records), once each.
      expect(after.map((r) => r.status)).toEqual(Array(N).fill('claimed'));
      const calls = await scriptCalls(server);
      expect(calls.eval).toBe(1);
      expect(calls.eval + calls.evalsha).toBeLessThanOrEqual(N + 1);
    });
  },
);

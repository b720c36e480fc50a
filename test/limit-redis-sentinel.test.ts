/**
 * The Redis rate limiter through a real Sentinel failover (master SIGKILLed under load): it fails
 * open while no master answers, as configured, and limits again on the new master.
 */
import { redisRateLimiter } from '@holdfast/limit/redis';
import { afterAll, describe, expect, it } from 'vitest';
import { redisAvailable, sentinelClient, startSentinel, stopAllRedis } from './support/redis.js';

afterAll(() => stopAllRedis());

describe.skipIf(!redisAvailable())('redisRateLimiter through a Sentinel failover', () => {
  it('fails open while the master is gone, then limits again on the new one', async () => {
    const setup = await startSentinel();
    const { client, close } = sentinelClient(setup, { failoverDetector: true });
    const rl = redisRateLimiter({ client, limit: 5, interval: 600_000, policies: false });
    try {
      const takes = async (key: string, n: number) => {
        const allowed: boolean[] = [];
        for (let i = 0; i < n; i++) allowed.push((await rl.take(key)).allowed);
        return allowed;
      };
      // The takes of a fresh key that Redis decided every one of. On a loaded machine a decision
      // can outlast commandTimeout (250 ms) and fail open, as configured, a store error the
      // limiter counts (CI: 6 of 6 allowed): such a round is not Redis' count, and another key is tried.
      const decided = async (prefix: string, n: number) => {
        for (let attempt = 0; attempt < 20; attempt++) {
          const errors = rl.snapshot().storeErrors;
          const got = await takes(`${prefix}-${attempt}`, n);
          if (rl.snapshot().storeErrors === errors) return got;
        }
        throw new Error(`20 rounds of ${n} takes each saw a store error`);
      };
      expect(await decided('before', 6)).toEqual([true, true, true, true, true, false]);
      // Decisions on other keys go on through the failover, 20 ms apart.
      let stop = false;
      const load = (async () => {
        for (let i = 0; !stop; i++) {
          await rl.take(`load-${i % 50}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      })();
      const errorsBefore = rl.snapshot().storeErrors;
      await setup.master.kill();
      // Until a fresh key is refused after its 5, Redis is not deciding (fail-open allows all).
      let limited = false;
      for (let round = 0; round < 100 && !limited; round++) {
        const got = await takes(`after-${round}`, 6);
        limited = got.filter(Boolean).length === 5 && got[5] === false;
        if (!limited) await new Promise((r) => setTimeout(r, 200));
      }
      stop = true;
      await load;
      expect(limited).toBe(true);
      expect(rl.snapshot().storeErrors).toBeGreaterThan(errorsBefore); // the outage was felt, and failed open
      expect(await setup.masterPort()).toBe(setup.replica.port);
      // Once limiting again, it keeps limiting: a new key, exactly 5 of 8.
      expect((await decided('steady', 8)).filter(Boolean)).toHaveLength(5);
    } finally {
      rl.dispose();
      close();
      await setup.stop();
    }
  }, 60_000);
});

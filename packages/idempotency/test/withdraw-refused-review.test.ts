/**
 * A claim given up on is withdrawn again once it settles, until Redis answers the withdrawal.
 * A Redis that answers with an error (BUSY: a slow script elsewhere held it past the claim's
 * `commandTimeout`, then it refuses everything) must not be sent a withdrawal per abandoned claim
 * every 100 ms for the whole lease: with a thousand claims given up on, that is 10,000 commands a
 * second at a server already in trouble.
 */
import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type RedisClient, redisStore } from '../src/index.js';

const BUSY = new Error('BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSCRIPT.');

interface Pending {
  resolve: (reply: unknown) => void;
  reject: (error: unknown) => void;
}

/** A connected client whose claims hang until the test settles them, and whose withdrawals Redis refuses with BUSY. */
function busyRedis() {
  const claims: Pending[] = [];
  let withdrawals = 0;
  const client: RedisClient = {
    status: 'ready',
    callBuffer(...args) {
      const claim = args.length > 5; // a claim sends fingerprint, lease and token; a release its token only
      if (!claim) {
        withdrawals++;
        return Promise.reject(BUSY);
      }
      return new Promise((resolve, reject) => claims.push({ resolve, reject }));
    },
    once: () => client,
    removeListener: () => client,
  };
  return { client, claims, withdrawals: () => withdrawals };
}

describe('a claim given up on, withdrawn against a Redis that answers with errors (review)', () => {
  // Refused too (BUSY): it may still be a resent copy of a claim that ran before a reconnection.
  for (const [how, settle] of [
    ['ran (its reply came late)', (c?: Pending) => c?.resolve([Buffer.from('claimed'), 0])],
    ['was refused too', (c?: Pending) => c?.reject(BUSY)],
  ] as const) {
    it(`a claim that ${how} is withdrawn again at a slowing pace, not every 100 ms of its lease`, async () => {
      const clock = new ManualClock();
      const redis = busyRedis();
      const store = redisStore({ client: redis.client, clock, commandTimeout: 100 });
      const claim = store.claim('k', 'fp', 10_000).catch((e: { code?: string }) => e.code);
      await clock.advance(100);
      expect(await claim).toBe('E_STORE_UNAVAILABLE');
      settle(redis.claims[0]);
      await clock.advance(10_000);
      // Behind it, once it settled, then after 100, 200, 400 ... 3200 ms: 8 in its 10 s lease, not 101.
      expect(redis.withdrawals()).toBe(8);
      await clock.advance(60_000);
      expect(redis.withdrawals()).toBe(8); // past the lease: none
    });
  }
});

import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { redisAvailable } from './support/redis.js';
import { explainLost, load, missingOn, rigPerTest, role, settled, tally, until } from './support/sentinel-load.js';

/**
 * `redisRoles()` under a real Redis Sentinel (3 Sentinels, quorum 2, down-after 1 s) watching a
 * master and 2 replicas, one ioredis client per server, under 80 reads/s and 20 writes/s. The
 * Sentinels, not the test, promote and demote. Every acknowledged write is looked for on the
 * master the Sentinels name at the end.
 */

const startRig = rigPerTest();

describe.skipIf(!redisAvailable())('redisRoles() under a real Sentinel', () => {
  it('master frozen, resumed the moment a replica is promoted: no acknowledged write lands on it', async () => {
    const r = await startRig();
    const run = load(r.db, 'race');
    await sleep(500);
    r.setup.master.pause();
    await until(async () => {
      for (const s of r.setup.replicas) if ((await role(s)) === 'master') return true;
      return false;
    }, 40_000); // a Sentinel failover that fails under load is tried again after 2 × failover-timeout
    r.setup.master.resume();
    const resumedAt = Date.now();
    const master = await settled(r.setup, r.servers);
    await sleep(1_000);
    const outcomes = await run.stop();
    const missing = await missingOn(master, outcomes);
    const { explained, unexplained } = explainLost(r, missing);
    const onStale = outcomes.filter(
      (o) => o.intent === 'write' && o.code === undefined && o.endpoint === 'redis-0' && o.started >= resumedAt - 600,
    ).length;
    const f = tally('S3 master SIGSTOP, SIGCONT at promotion', outcomes, {
      writesLost: missing.length,
      lostToLaterFailover: explained.length,
      ackedByStale: onStale,
    });
    expect(unexplained).toEqual([]);
    expect(onStale).toBe(0);
    expect(f.readsMissing).toBe(0);
  }, 100_000);
});

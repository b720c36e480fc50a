import { setTimeout as sleep } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { redisAvailable } from './support/redis.js';
import { load, lostOn, rigPerTest, role, settled, tally, until } from './support/sentinel-load.js';

/**
 * The master cut off from the Sentinels while the set's clients still reach it: the Sentinels
 * promote a replica, but cannot tell the old master, which keeps taking writes from clients that
 * see it. The cut: the master's `default` user is turned off (connections already authenticated
 * keep working, new ones are refused) and the Sentinels' connections are closed, so they reconnect
 * into `NOAUTH`. Healed by turning the user on again: the Sentinels demote the old master.
 */

const startRig = rigPerTest();

describe.skipIf(!redisAvailable())('redisRoles() under a real Sentinel, master cut off from the Sentinels', () => {
  it('writes move to the promoted replica within one roles.interval; what the old master took meanwhile is lost', async () => {
    const r = await startRig();
    const master = r.db.endpoints[0]?.target as Redis; // authenticated already: keeps working
    const run = load(r.db, 'cut');
    await sleep(500);
    await master.acl('SETUSER', 'default', 'off');
    const list = (await master.client('LIST')) as string;
    for (const line of list.split('\n')) {
      const id = /^id=(\d+) .* name=sentinel-/.exec(line)?.[1];
      if (id !== undefined) await master.client('KILL', 'ID', id);
    }
    await until(async () => {
      for (const s of r.setup.replicas) if ((await role(s)) === 'master') return true;
      return false;
    });
    const promotedAt = Date.now();
    await until(() => r.db.snapshot().primary !== 'redis-0');
    const fencedAt = Date.now();
    await sleep(1_000);
    await master.acl('SETUSER', 'default', 'on'); // healed: the Sentinels demote it
    const final = await settled(r.setup, r.servers);
    await sleep(500);
    const outcomes = await run.stop();
    const lost = await lostOn(final, outcomes);
    const onOld = outcomes.filter(
      (o) => o.intent === 'write' && o.code === undefined && o.endpoint === 'redis-0' && o.started >= promotedAt,
    ).length;
    const f = tally('S6 master cut off from the Sentinels', outcomes, {
      writesLost: lost,
      ackedByStale: onOld,
      fencedAfterMs: fencedAt - promotedAt,
    });
    // Bounded by one roles.interval (1 s at 20 writes/s): the promoted replica is seen at its next check.
    expect(lost).toBeLessThanOrEqual(25);
    expect(f.readsMissing).toBe(0);
  }, 60_000);
});

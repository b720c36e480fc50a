import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable } from './support/redis.js';
import { explainLost, load, missingOn, rigPerTest, role, settled, tally, until } from './support/sentinel-load.js';

/**
 * `redisRoles()` under a real Redis Sentinel (3 Sentinels, quorum 2, down-after 1 s) watching a
 * master and 2 replicas, one ioredis client per server, under 80 reads/s and 20 writes/s. The
 * Sentinels, not the test, promote and demote. Every acknowledged write is looked for on the
 * master the Sentinels name at the end.
 */

const startRig = rigPerTest();

describe.skipIf(!redisAvailable())('redisRoles() under a real Sentinel', () => {
  it('master killed: the Sentinels promote a replica, writes move there, no acknowledged write is lost', async () => {
    const r = await startRig();
    let run = load(r.db, 'kill');
    await sleep(500);
    await r.setup.master.kill();
    let master = await settled(r.setup, r.servers.slice(1));
    await until(() => r.db.snapshot().primary === r.names.get(master));
    await sleep(1_000);
    let outcomes = await run.stop();
    let lost = explainLost(r, await missingOn(master, outcomes));
    tally('S1 master SIGKILL', outcomes, {
      writesLost: lost.explained.length + lost.unexplained.length,
      lostToLaterFailover: lost.explained.length,
    });
    expect(lost.unexplained).toEqual([]);

    // The old master comes back empty, a master of a history of its own, until the Sentinels
    // turn it into a replica of the new one.
    run = load(r.db, 'back');
    await sleep(300);
    await r.setup.master.restart();
    const restartedAt = Date.now();
    // Under load the Sentinels may fail over again meanwhile: the master is the one they name now.
    master = await settled(r.setup, r.servers);
    await sleep(500);
    outcomes = await run.stop();
    const onOld = outcomes.filter(
      (o) => o.intent === 'write' && o.code === undefined && o.endpoint === 'redis-0' && o.started >= restartedAt - 600,
    ).length;
    lost = explainLost(r, await missingOn(master, outcomes));
    tally('S4 old master restarted empty', outcomes, {
      writesLost: lost.explained.length + lost.unexplained.length,
      lostToLaterFailover: lost.explained.length,
      ackedByStale: onOld,
    });
    expect(lost.unexplained).toEqual([]);
    expect(onOld).toBe(0);

    // A replica restarted empty: it loads the master's data again before it serves reads. A
    // replica the Sentinels name now: the one S1 left a replica may have been promoted since (a
    // failover the Sentinels started on their own under load), and restarted, the master it is
    // comes back empty (CI restarted such a master when it came back replicating from the first
    // master, itself a replica of it: a replication loop; see configFile in support/redis.ts).
    const other = r.servers.slice(1).find((s) => s !== master) as RedisServer;
    expect(await role(other)).toBe('slave/up');
    run = load(r.db, 'replica');
    await sleep(300);
    await other.restart();
    await settled(r.setup, r.servers);
    await sleep(1_000);
    outcomes = await run.stop();
    lost = explainLost(r, await missingOn(master, outcomes));
    tally('S5 replica restarted empty', outcomes, {
      writesLost: lost.explained.length + lost.unexplained.length,
      lostToLaterFailover: lost.explained.length,
    });
    expect(lost.unexplained).toEqual([]);
  }, 120_000); // settled() waits up to 30 s, three times
});

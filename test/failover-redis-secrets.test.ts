import { once } from 'node:events';
import { inspect } from 'node:util';
import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { redisRoles } from '@holdfast/failover/ioredis';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, redisCommand, startRedis, stopAllRedis } from './support/redis.js';

/**
 * Redis servers behind a password (`requirepass`), the password given to ioredis in a URL and in
 * its options, one client with a wrong one: the password is in no message, event, snapshot or
 * error cause the set hands out, while the roles are checked, a server fails, and writes are refused.
 */

const secret = 'Sup3r-s3cret-pw';
const clients: Redis[] = [];
afterAll(async () => {
  for (const c of clients) c.disconnect();
  await stopAllRedis();
});

function track(c: Redis): Redis {
  c.on('error', () => {});
  clients.push(c);
  return c;
}

describe.skipIf(!redisAvailable())('failover over password-protected Redis servers', () => {
  it('never shows the password: messages, events, snapshots and causes', async () => {
    const [m, r] = (await startRedis(2, ['--masterauth', secret])) as [RedisServer, RedisServer];
    // The harness pings without a password: the servers ask for one once they run.
    for (const s of [m, r]) await redisCommand(s.port, ['CONFIG', 'SET', 'requirepass', secret]);
    const options = { maxRetriesPerRequest: 0, enableOfflineQueue: false } as const;
    const cm = track(new Redis(`redis://:${secret}@127.0.0.1:${m.port}`, options));
    const cr = track(new Redis({ host: r.host, port: r.port, password: secret, ...options }));
    const wrong = track(new Redis({ host: r.host, port: r.port, password: `${secret}-wrong`, ...options }));
    await Promise.all([once(cm, 'ready'), once(cr, 'ready')]);
    await cr.replicaof(m.host, m.port);
    const bus = createBus();
    const seen: unknown[] = [];
    bus.on('*', (e) => seen.push(e));
    const db = failover({
      name: 'secret-set',
      endpoints: [
        { name: 'm', target: cm },
        { name: 'r', target: cr },
        { name: 'wrong', target: wrong },
      ],
      roles: redisRoles({ interval: 200, timeout: 300 }),
      timeout: 300,
      bus,
      policies: false,
    });
    try {
      expect(await db.execute((e) => e.target.set('k', 'v').then(() => e.name))).toBe('m');
      const outcomes: unknown[] = [await db.execute((e) => e.target.get('k'), { intent: 'read' }).catch((e) => e)];
      await m.kill(); // the master dies: writes are refused, with a cause
      const deadline = Date.now() + 5_000;
      while (db.snapshot().primary !== null && Date.now() < deadline) await new Promise((x) => setTimeout(x, 50));
      outcomes.push(await db.execute((e) => e.target.set('k', 'w')).catch((e) => e));
      outcomes.push(await db.execute((e) => e.target.get('k'), { intent: 'read' }).catch((e) => e));
      const refused = outcomes[1] as Error & { cause?: unknown };
      expect(refused).toMatchObject({ code: 'E_NO_PRIMARY' });
      const shown = [
        JSON.stringify(db.snapshot()),
        inspect(seen, { depth: 10 }),
        ...outcomes.map((o) => inspect(o, { depth: 10 })),
        inspect(refused.cause, { depth: 10 }),
      ].join('\n');
      expect(shown).toContain('wrong'); // the wrong client is reported, as unreachable
      expect(shown).not.toContain(secret);
    } finally {
      db.dispose();
    }
  });
});

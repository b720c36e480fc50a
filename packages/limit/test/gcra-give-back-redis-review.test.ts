import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { redisRateLimiter } from '../src/redis.js';

const TAKEN = Symbol.for('holdfast.limit.taken');

/** Whether every call, in order, is allowed by an exact GCRA. */
function conforms(calls: readonly { at: number; cost: number }[], emission: number, tolerance: number): boolean {
  let tat = Number.NEGATIVE_INFINITY;
  for (const c of [...calls].sort((x, y) => x.at - y.at)) {
    const next = Math.max(tat, c.at) + emission * c.cost;
    if (next - c.at > tolerance + 1e-6) return false;
    tat = next;
  }
  return true;
}

// The real scripts on a real Redis through random steps: two limiters (two connections, as two
// processes) share a key; each takes, or gives back one of the calls it let through, early or
// late (a bulkhead's queue timing the request out), between bounded sleeps. The calls that ran
// (allowed, not given back), at the server's clock, must fit the exact GCRA schedule.
describe.skipIf(!redisAvailable())('GCRA give-backs on real Redis, random steps, two limiters on one key', () => {
  let server: RedisServer;
  const clients: Redis[] = [];
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
    for (let i = 0; i < 2; i++) {
      const c = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 });
      c.on('error', () => {});
      clients.push(c);
    }
  }, 30_000);
  afterAll(async () => {
    for (const c of clients) c.disconnect();
    await stopAllRedis();
  });

  it('never loose over 160 steps (limit 3 per 300 ms, burst 3, costs 1-2); how strict, counted', async () => {
    let seed = 20_261_205;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const emission = 100;
    const burst = 3;
    const limiters = clients.map((client) =>
      redisRateLimiter({
        client,
        limit: 3,
        interval: 300,
        burst,
        commandTimeout: 5_000,
        policies: false,
        prefix: 'walk:',
      }),
    );
    const serverMs = async (c: Redis) => {
      const [s, us] = (await c.call('time')) as [string, string];
      return Number(s) * 1000 + Number(us) / 1000;
    };
    type Ran = { at: number; cost: number; back: boolean; undo: () => void; who: number };
    const ran: Ran[] = [];
    let refused = 0;
    let fit = 0;
    let backs = 0;
    for (let step = 0; step < 160; step++) {
      const who = random() < 0.5 ? 0 : 1;
      const client = clients[who] as Redis;
      const kept = ran.filter((r) => !r.back && r.who === who);
      if (random() < 0.3 && kept.length > 0) {
        // Mostly the oldest: late, after the key's clock absorbed its cell (issue #17's case).
        const r = kept[random() < 0.7 ? 0 : Math.floor(random() * kept.length)] as Ran;
        r.back = true;
        r.undo();
        backs++;
        await client.ping(); // the server's clock, then the give-back script, on this connection
        await client.ping();
      } else {
        const cost = random() < 0.25 ? 2 : 1;
        let undo = () => {};
        const hook = { [TAKEN]: (u: () => void) => (undo = u) };
        const before = await serverMs(client);
        const allowed = await (limiters[who] as (typeof limiters)[0])
          .execute(() => true, { key: 'k', cost, ...hook } as never)
          .catch(() => false);
        const after = await serverMs(client);
        // Counted at the latest the script could have run: lenient by the round trip (ms), where
        // a loose give-back lets a call through a whole emission interval (100 ms) early.
        if (allowed) ran.push({ at: after, cost, back: false, undo, who });
        // How strict: a refusal the exact schedule of the calls running then would have let through.
        else if (conforms([...ran.filter((r) => !r.back), { at: before, cost }], emission, emission * burst)) fit++;
        else refused++;
      }
      await new Promise((r) => setTimeout(r, Math.floor(random() * 60)));
    }
    const kept = ran.filter((r) => !r.back);
    console.log(
      `walk: ${ran.length} allowed, ${backs} given back, ${refused + fit} refused, of which ${fit} would have fit`,
    );
    expect(ran.length).toBeGreaterThan(30);
    expect(backs).toBeGreaterThan(10);
    expect(conforms(kept, emission, emission * burst)).toBe(true);
  }, 60_000);
});

// Two processes behind one Redis limit (2 a second, burst 2), each with a bulkhead (one at a time,
// one queued for 300 ms) whose refusals give the limit's unit back: at once when the bulkhead is
// full, 300 ms late when the queue times out (a 500 ms cell then partly absorbed).
describe.skipIf(!redisAvailable())('two processes, one Redis limit, bulkhead refusals given back', () => {
  afterAll(stopAllRedis);

  it('the calls that ran, at the server clock of their decision, fit the exact schedule (8 s)', async () => {
    const [server] = (await startRedis(1)) as [RedisServer];
    const worker = fileURLToPath(new URL('./fixtures/give-back-worker.ts', import.meta.url));
    const children = [0, 1].map(() =>
      spawn(process.execPath, ['--conditions=@holdfast/source', '--import', 'tsx', worker, server.url, '8000', '6'], {
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    try {
      const reads = children.map((c) => createInterface({ input: c.stdout })[Symbol.asyncIterator]());
      for (const r of reads) expect((await r.next()).value).toBe('ready');
      for (const c of children) c.stdin.write('go\n');
      const reports = await Promise.all(
        reads.map(
          async (r) =>
            JSON.parse((await r.next()).value as string) as { ran: number[]; refused: number; givenBack: number },
        ),
      );
      const ran = reports.flatMap((r) => r.ran).map((at) => ({ at, cost: 1 }));
      console.log(
        `two processes: ${ran.length} ran, ${reports.map((r) => r.givenBack).join('+')} given back, ${reports.map((r) => r.refused).join('+')} refused by the limit`,
      );
      expect((reports[0]?.givenBack ?? 0) + (reports[1]?.givenBack ?? 0), 'given back').toBeGreaterThan(2);
      // The decision ran just after the TIME read (same connection, in order): 5 ms of slack.
      expect(conforms(ran, 500, 1_000 + 5), 'fits').toBe(true);
    } finally {
      for (const c of children) c.kill('SIGKILL');
    }
  }, 30_000);
});

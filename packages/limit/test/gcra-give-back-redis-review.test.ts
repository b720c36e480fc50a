import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { conforms } from './gcra.js';

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
            JSON.parse((await r.next()).value as string) as {
              ran: number[];
              refused: number;
              givenBack: number;
              unclocked: number;
            },
        ),
      );
      const ran = reports.flatMap((r) => r.ran).map((at) => ({ at, cost: 1 }));
      console.log(
        `two processes: ${ran.length} ran, ${reports.map((r) => r.givenBack).join('+')} given back, ${reports.map((r) => r.refused).join('+')} refused by the limit`,
      );
      expect((reports[0]?.givenBack ?? 0) + (reports[1]?.givenBack ?? 0), 'given back').toBeGreaterThan(2);
      // Each call's clock is the TIME its decision's MULTI read just before the script (the same
      // instant, microseconds early): 1 ms of slack, for that and the script's float arithmetic.
      expect(
        reports.map((r) => r.unclocked),
        'calls that ran without their decision clocked',
      ).toEqual([0, 0]);
      const sorted = ran.map((c) => c.at).sort((x, y) => x - y);
      expect(
        conforms(ran, 500, 1_000 + 1),
        `fits: ${sorted.map((at) => (at - (sorted[0] ?? 0)).toFixed(1)).join(' ')}`,
      ).toBe(true);
    } finally {
      for (const c of children) c.kill('SIGKILL');
    }
  }, 30_000);
});

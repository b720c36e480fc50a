import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { redisAvailable } from '../../../test/support/redis.js';
import { idempotent, redisStore } from '../src/index.js';
import { killChildren, startChild } from './child-lines.js';
import { useRedisServer } from './redis.js';

const worker = fileURLToPath(new URL('./fixtures/worker.ts', import.meta.url));
const startWorker = (...args: string[]) => startChild(worker, ...args);

describe.skipIf(!redisAvailable())('idempotent() across OS processes sharing Redis', { timeout: 40_000 }, () => {
  const redis = useRedisServer(killChildren);

  it('2 processes x 100 concurrent calls with one key: the function runs exactly once, all 200 get its result', async () => {
    const a = startWorker('race', redis.server.url, 'race-1', '100');
    const b = startWorker('race', redis.server.url, 'race-1', '100');
    expect(await Promise.all([a.nextLine(), b.nextLine()])).toEqual(['ready', 'ready']);
    a.child.stdin?.write('go\n');
    b.child.stdin?.write('go\n');
    const [fromA, fromB] = (await Promise.all([a.nextLine(), b.nextLine()])).map(
      (line) => JSON.parse(line) as { pid: number; effects: number }[],
    ) as [{ pid: number; effects: number }[], { pid: number; effects: number }[]];
    const all = [...fromA, ...fromB];
    expect(all).toHaveLength(200);
    expect(await redis.client.get('effects:race-1')).toBe('1');
    const [winner] = all;
    expect(winner?.effects).toBe(1);
    expect([a.child.pid, b.child.pid]).toContain(winner?.pid);
    for (const result of all) expect(result).toEqual(winner);
  });

  it('an owner killed with SIGKILL mid-handler: before its lease ends repeats get in-progress, after it the next attempt runs', async () => {
    const lease = 1_500;
    const crashed = startWorker('hang', redis.server.url, 'crash-1', String(lease));
    expect(await crashed.nextLine()).toBe('started');
    const exited = once(crashed.child, 'exit');
    crashed.child.kill('SIGKILL');
    expect(await exited).toEqual([null, 'SIGKILL']);

    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    let runs = 0;
    const options = {
      store: redisStore({ client: redis.client, prefix: 'mp:' }),
      key: () => 'crash-1',
      leaseMs: lease,
      bus,
      name: 'job', // one function wrapped twice (a patient caller): one name
    };
    const job = idempotent(async () => `recovered by ${++runs}`, options);
    const conflict = await job(undefined).catch((e: unknown) => e);
    expect(conflict).toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
    expect((conflict as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect(runs).toBe(0);

    const patient = idempotent(async () => `recovered by ${++runs}`, {
      ...options,
      wait: { timeout: 3 * lease, interval: 50 },
    });
    expect(await patient(undefined)).toBe('recovered by 1');
    expect(events.map((e) => e.type)).toEqual(['idempotency.conflict', 'idempotency.claim', 'idempotency.takeover']);
    expect(await job(undefined)).toBe('recovered by 1'); // and from now on it replays
  });
});

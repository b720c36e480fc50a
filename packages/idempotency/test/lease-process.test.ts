import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { redisAvailable } from '../../../test/support/redis.js';
import { idempotent, redisStore } from '../src/index.js';
import { killChildren, startChild } from './child-lines.js';
import { sleep, useRedisServer } from './redis.js';

const worker = fileURLToPath(new URL('./fixtures/lease-worker.ts', import.meta.url));
const startWorker = (...args: string[]) => startChild(worker, ...args);

const codeOf = (e: { code?: string }) => e.code;

describe.skipIf(!redisAvailable())('lease renewal across OS processes sharing Redis', { timeout: 40_000 }, () => {
  const redis = useRedisServer(killChildren);

  const retrier = (key: string, lease: number, bus = createBus()) => {
    let runs = 0;
    const job = idempotent(
      async () => {
        runs++;
        await redis.client.incr(`effects:${key}`);
        return 'by the test';
      },
      { store: redisStore({ client: redis.client, prefix: 'lp:' }), key: () => key, leaseMs: lease, bus },
    );
    return { job, runs: () => runs };
  };

  it('owner in process A runs 1,200 ms on a 300 ms lease, B retries every 100 ms: one effect, B conflicts then replays', async () => {
    const a = startWorker('slow', redis.server.url, 'two-1', '300', '1200');
    expect(await a.nextLine()).toBe('started');
    const b = retrier('two-1', 300);
    const answers: (string | undefined)[] = [];
    for (let i = 0; i < 10; i++) {
      await sleep(100);
      answers.push(await b.job(undefined).catch(codeOf));
    }
    const done = JSON.parse(await a.nextLine()) as { answer: string; events: string[] };
    expect(done.answer).toBe(`by ${a.child.pid}`);
    expect(await b.job(undefined)).toBe(`by ${a.child.pid}`);
    expect([await redis.client.get('effects:two-1'), b.runs()]).toEqual(['1', 0]);
    expect(answers.slice(0, 8)).toEqual(Array(8).fill('E_IDEMPOTENCY_CONFLICT'));
  });

  it('owner killed (SIGKILL) mid-run: its renewal dies with it, B takes over about a lease later', async () => {
    const lease = 600;
    const a = startWorker('slow', redis.server.url, 'kill-1', String(lease), '60000');
    expect(await a.nextLine()).toBe('started');
    await sleep(lease); // renewed at least once
    const exited = once(a.child, 'exit');
    a.child.kill('SIGKILL');
    await exited;
    const killedAt = Date.now();
    const b = retrier('kill-1', lease);
    let answer: string | undefined;
    while (answer === undefined || answer === 'E_IDEMPOTENCY_CONFLICT') {
      await sleep(50);
      answer = await b.job(undefined).catch(codeOf);
    }
    expect(answer).toBe('by the test');
    expect(Date.now() - killedAt).toBeLessThan(lease + 1_000);
    expect(b.runs()).toBe(1);
  });

  it('owner frozen (SIGSTOP) past its lease: B takes over; A resumed gets leaseLost, its completion is refused', async () => {
    const lease = 300;
    const a = startWorker('slow', redis.server.url, 'stop-1', String(lease), '1500');
    expect(await a.nextLine()).toBe('started');
    a.child.kill('SIGSTOP');
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const b = retrier('stop-1', lease, bus);
    let answer: string | undefined;
    while (answer === undefined || answer === 'E_IDEMPOTENCY_CONFLICT') {
      await sleep(50);
      answer = await b.job(undefined).catch(codeOf);
    }
    expect(answer).toBe('by the test');
    expect(events.map((e) => e.type)).toContain('idempotency.takeover');
    a.child.kill('SIGCONT');
    const done = JSON.parse(await a.nextLine()) as { answer: string; events: string[] };
    expect(done.answer).toBe(`by ${a.child.pid}`);
    expect(done.events).toEqual(['idempotency.claim', 'idempotency.leaseLost', 'idempotency.staleCompletion']);
    // B's value stays: nothing overwrote it.
    expect(await b.job(undefined)).toBe('by the test');
    expect([await redis.client.get('effects:stop-1'), b.runs()]).toEqual(['2', 1]);
  });
});

describe('nothing holds the process open', () => {
  it('a script that runs one call slower than its lease, then ends, exits by itself', async () => {
    const w = startWorker('exits', '90', '400');
    const [code] = await Promise.race([once(w.child, 'exit'), sleep(15_000).then(() => ['still running'])]);
    expect(code).toBe(0);
  });
});

/**
 * Keys scoped to the caller, across processes sharing one Redis: an Express and a Fastify
 * service (child processes) with `scope: (req) => req.get('x-user')`. Two users sending one key
 * each get their own run and their own replay, from either process; one user sending one key to
 * both processes at once gets one run. Reported: runs per (user, key), and answers by status.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLineService } from './support/child.js';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

const SERVICE = fileURLToPath(new URL('./support/idempotency-scoped-service.ts', import.meta.url));

interface Service {
  readonly url: string;
  readonly child: ChildProcess;
}

/** Every handler run, by `user key`, across both services. */
const runs = new Map<string, number>();
const children: ChildProcess[] = [];

async function startService(framework: 'express' | 'fastify', redisPort: number): Promise<Service> {
  const { child, port } = await startLineService(SERVICE, [framework, String(redisPort)], (what) =>
    runs.set(what, (runs.get(what) ?? 0) + 1),
  );
  children.push(child);
  return { url: `http://127.0.0.1:${port}/orders`, child };
}

async function post(service: Service, user: string, key: string) {
  const response = await fetch(service.url, {
    method: 'POST',
    headers: { 'x-user': user, 'idempotency-key': key, 'content-type': 'application/json' },
    body: '{"amount":4200}',
    signal: AbortSignal.timeout(5_000),
  });
  return {
    status: response.status,
    replayed: response.headers.get('idempotent-replayed') === 'true',
    body: await response.text(),
  };
}

describe.skipIf(!redisAvailable())('idempotency: scoped keys, two processes, one Redis', () => {
  let redis: RedisServer;
  let expressService: Service;
  let fastifyService: Service;

  beforeAll(async () => {
    [redis] = (await startRedis(1)) as [RedisServer];
    [expressService, fastifyService] = await Promise.all([
      startService('express', redis.port),
      startService('fastify', redis.port),
    ]);
  }, 30_000);

  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    await stopAllRedis();
  });

  it('two users, one key, one in each process at once: each runs once and gets its own replay from either process', async () => {
    const [alice, bob] = await Promise.all([
      post(expressService, 'alice', 'order-1'),
      post(fastifyService, 'bob', 'order-1'),
    ]);
    expect([alice.status, bob.status]).toEqual([201, 201]);
    expect(JSON.parse(alice.body)).toMatchObject({ owner: 'alice' });
    expect(JSON.parse(bob.body)).toMatchObject({ owner: 'bob' });
    // Each replays its own, from the other process too: never the other user's response.
    for (const service of [expressService, fastifyService]) {
      expect(await post(service, 'alice', 'order-1')).toEqual({ ...alice, replayed: true });
      expect(await post(service, 'bob', 'order-1')).toEqual({ ...bob, replayed: true });
    }
    // Scopes and keys that would join into one string ("a:1" + "2", "a" + "1:2") stay apart.
    expect((await post(expressService, 'a:1', '2')).status).toBe(201);
    expect(await post(fastifyService, 'a', '1:2')).toMatchObject({ status: 201, replayed: false });
    expect(Object.fromEntries(runs)).toMatchObject({ 'alice order-1': 1, 'bob order-1': 1, 'a:1 2': 1, 'a 1:2': 1 });
  });

  it('one user, one key, sent to both processes at once (20 keys): one run per key; the other answer is 409 or the replay', async () => {
    const statuses: Record<string, number> = {};
    for (let i = 0; i < 20; i++) {
      const key = `race-${i}`;
      const answers = await Promise.all([post(expressService, 'carol', key), post(fastifyService, 'carol', key)]);
      for (const answer of answers) {
        const label = answer.replayed ? 'replay' : String(answer.status);
        statuses[label] = (statuses[label] ?? 0) + 1;
        expect([201, 409]).toContain(answer.status);
      }
      const made = answers.filter((a) => a.status === 201 && !a.replayed);
      expect(made).toHaveLength(1);
      // Afterwards both processes replay that one response.
      expect(await post(fastifyService, 'carol', key)).toEqual({ ...made[0], replayed: true });
      expect(await post(expressService, 'carol', key)).toEqual({ ...made[0], replayed: true });
    }
    const carol = [...runs].filter(([name]) => name.startsWith('carol '));
    expect(carol).toHaveLength(20);
    expect(carol.every(([, count]) => count === 1)).toBe(true);
    console.log('one user, two processes, 20 keys x 2 concurrent requests:', statuses);
  });
});

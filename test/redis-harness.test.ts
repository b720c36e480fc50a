import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runModuleSync } from './support/child.js';
import { redisAvailable, startRedis, stopAllRedis } from './support/redis.js';

function ping(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = new Socket();
    socket.once('error', reject);
    socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().trim());
    });
  });
}

describe.skipIf(!redisAvailable())('test harness: redis-server processes', () => {
  afterAll(stopAllRedis);

  it('starts N servers on distinct free loopback ports, and kills, restarts and stops them', async () => {
    const [a, b] = await startRedis(2);
    if (!a || !b) throw new Error('expected two servers');
    expect(a.port).not.toBe(b.port);
    expect(await ping(a.port)).toBe('+PONG');
    expect(await ping(b.port)).toBe('+PONG');

    await a.kill();
    expect(a.running).toBe(false);
    await expect(ping(a.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    await a.restart();
    expect(a.running).toBe(true);
    expect(await ping(a.port)).toBe('+PONG');

    await b.stop();
    expect(b.running).toBe(false);
  });
});

describe('test harness: valkey-server missing under CI=true', () => {
  it('fails the tests that start it, naming what is missing, not the whole file at collection', () => {
    // valkeyAvailable() is called while a file is collected (describe.skipIf): a throw there
    // failed every test of test/idempotency-wait-replicas.test.ts, the Redis ones included.
    const support = new URL('./support/redis.ts', import.meta.url).href;
    const run = runModuleSync(
      `const { valkeyAvailable, startRedis } = await import(${JSON.stringify(support)});
        let available; try { available = valkeyAvailable(); } catch (e) { available = 'threw: ' + e.message; }
        const started = await startRedis(1, [], { server: 'valkey' }).then(() => 'started', (e) => e.message);
        console.log(JSON.stringify({ available, started }));`,
      {
        cwd: fileURLToPath(new URL('.', import.meta.url)),
        env: { CI: 'true', VALKEY_SERVER: '/nonexistent/valkey-server' },
      },
    );
    const out = JSON.parse(run.stdout.trim()) as { available: unknown; started: string };
    expect(out.available).toBe(true); // the tests run ...
    expect(out.started).toMatch(
      /valkey-server not found \(tried "\/nonexistent\/valkey-server"; set VALKEY_SERVER.*CI=true/,
    ); // ... and fail
  }, 60_000);
});

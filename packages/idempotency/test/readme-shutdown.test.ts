/**
 * The README's redisStore example, run as printed, against a Redis that freezes as the example
 * shuts down (whatever it sends from then on is never answered): it must still exit by itself. A
 * `quit()` waits for Redis to answer QUIT, so it never settled and held the process.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';

const packageDir = resolve(import.meta.dirname, '..');
const readme = readFileSync(resolve(packageDir, 'README.md'), 'utf8');
const section = readme.slice(readme.indexOf('## `redisStore(options)`'));
const sample = /```ts run\n([\s\S]*?)```/.exec(section)?.[1];

/** A proxy to `port` that holds, unanswered, everything a client sends from its first shutdown command (QUIT) on. */
async function freezingAtShutdown(port: number) {
  const sockets = new Set<Socket>();
  let held = 0;
  const proxy = createServer((client) => {
    const server = createConnection(port, '127.0.0.1');
    let frozen = false;
    for (const s of [client, server]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        server.destroy();
      });
    }
    client.on('data', (chunk) => {
      if (!frozen && /\bquit\b/i.test(chunk.toString('latin1'))) frozen = true;
      if (frozen) held++;
      else server.write(chunk);
    });
    server.on('data', (chunk) => client.write(chunk));
  });
  await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done));
  return {
    port: (proxy.address() as { port: number }).port,
    held: () => held,
    close() {
      for (const s of sockets) s.destroy();
      proxy.close();
    },
  };
}

describe.skipIf(!redisAvailable())('README: the redisStore example and a Redis frozen at shutdown', () => {
  let server: RedisServer;
  const scratch = mkdtempSync(resolve(packageDir, 'test', '.readme-shutdown-'));
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(async () => {
    rmSync(scratch, { recursive: true, force: true });
    await stopAllRedis();
  });

  // A Node process under tsx: seconds on a busy 2-core machine; a hang is the child killed at 30 s.
  it('exits by itself, having printed its result', { timeout: 45_000 }, async () => {
    expect(sample, 'README: no `ts run` example under ## `redisStore(options)`').toBeDefined();
    const proxy = await freezingAtShutdown(server.port);
    const file = resolve(scratch, 'redis-store.ts');
    writeFileSync(file, sample as string);
    try {
      const ended = await new Promise<{ code: number | null; killed: boolean; stdout: string }>((done) => {
        const child = execFile(
          process.execPath,
          ['--conditions=@holdfast/source', '--import', 'tsx', file],
          { cwd: packageDir, timeout: 30_000, env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${proxy.port}` } },
          (_error, stdout) => done({ code: child.exitCode, killed: child.killed, stdout }),
        );
      });
      expect(ended.stdout).toContain('processed hello processed hello ran 1 time(s)');
      expect({ killed: ended.killed, code: ended.code }).toEqual({ killed: false, code: 0 });
    } finally {
      proxy.close();
    }
  });
});

import { createRequire } from 'node:module';
import { pipeline } from '@holdfast/core';
import { idempotent, memoryStore, type RedisClient, redisStore } from '@holdfast/idempotency';
import { retry } from '@holdfast/retry';
import { redisAvailable, startRedis, stopAllRedis } from '../test/support/redis.js';
import { compare, printRows } from './harness.js';

const op = (n: number) => Promise.resolve({ ok: true, n });

async function memory(): Promise<void> {
  // Two stores: the fresh keys would otherwise evict the replayed one (maxEntries 10,000).
  const store = memoryStore();
  const freshStore = memoryStore();
  let fresh = 0;
  const replayed = idempotent(op, { store, key: () => 'same-key' });
  const once = idempotent(op, { store: freshStore, key: (n) => `key-${n}` });
  // The same, with a function that reads its signal: the AbortController a context makes only then.
  const onceReading = idempotent((n: number, ctx) => (ctx.signal.aborted ? op(0) : op(n)), {
    store: freshStore,
    key: (n) => `signal-key-${n}`,
  });
  await replayed(1);
  // Inside a pipeline, the policy's context is passed on as the call's options (it carries the signal).
  const retries = pipeline(retry({ maxAttempts: 3 }));
  await compare({
    title: 'idempotent() on memoryStore(): overhead per call',
    baseline: 'bare call',
    variants: [
      { name: 'bare call', call: () => op(1) },
      { name: 'first run of a new key (claim, run, complete)', call: () => once(++fresh) },
      { name: 'first run, the function reads ctx.signal', call: () => onceReading(++fresh) },
      { name: 'replay of a completed key', call: () => replayed(1) },
      { name: 'pipeline(retry()) around a bare call', call: () => retries.execute(() => op(1)) },
      {
        name: 'pipeline(retry()) around a replay, ctx passed on',
        call: () => retries.execute((ctx) => replayed(1, ctx)),
      },
    ],
  });
  store.dispose();
  freshStore.dispose();
}

async function redis(): Promise<void> {
  if (!redisAvailable()) return;
  const require = createRequire(import.meta.url);
  type Client = RedisClient & {
    get(key: string): Promise<string | null>;
    set(key: string, value: string): Promise<unknown>;
    disconnect(): void;
  };
  const { Redis } = require('ioredis') as { Redis: new (port: number, host: string) => Client };
  const [server] = await startRedis(1);
  if (!server) throw new Error('no redis-server');
  const client = new Redis(server.port, server.host);
  try {
    const store = redisStore({ client, prefix: 'bench:' });
    let fresh = 0;
    const replayed = idempotent(op, { store, key: () => 'same-key' });
    const once = idempotent(op, { store, key: (n) => `key-${n}`, ttlMs: 60_000 });
    await replayed(1);
    await once(0);
    await client.set('plain', 'x');
    await compare({
      title: 'idempotent() on redisStore() (local redis-server, one connection, calls in sequence)',
      baseline: 'GET (one round trip)',
      calls: 200,
      variants: [
        { name: 'GET (one round trip)', call: () => client.get('plain') },
        { name: 'first run of a new key (2 round trips)', call: () => once(++fresh) },
        { name: 'replay of a completed key (1 round trip)', call: () => replayed(1) },
      ],
    });
  } finally {
    client.disconnect();
    await stopAllRedis();
  }
}

/**
 * `waitForReplicas` under concurrency: each write's latency (claim, run, complete) with the
 * replica's acknowledgement, against the same store without it, at 1, 8 and 64 writers. At most
 * one WAIT is on the wire per node; the writes made meanwhile are confirmed together by the next
 * one: this shows what that costs a write that overlaps another's WAIT.
 */
async function durable(): Promise<void> {
  if (!redisAvailable()) return;
  const require = createRequire(import.meta.url);
  const { Redis } = require('ioredis') as {
    Redis: new (
      port: number,
      host: string,
    ) => RedisClient & { disconnect(): void; call(...args: string[]): Promise<unknown> };
  };
  const [master] = await startRedis(1);
  if (!master) throw new Error('no redis-server');
  const [replica] = await startRedis(1, ['--replicaof', '127.0.0.1', String(master.port)]);
  if (!replica) throw new Error('no redis-server');
  const client = new Redis(master.port, master.host);
  const WRITES = 4_000;
  try {
    // The replica has synced once WAIT counts it.
    for (let i = 0; i < 100 && Number(await client.call('WAIT', '1', '100')) < 1; i++);
    const rows: string[][] = [];
    let fresh = 0;
    for (const writers of [1, 8, 64]) {
      for (const [name, waitForReplicas] of [
        ['no WAIT', undefined],
        ['waitForReplicas 1', { replicas: 1, timeoutMs: 300 }],
      ] as const) {
        const store = redisStore({ client, prefix: 'bench-durable:', ...(waitForReplicas ? { waitForReplicas } : {}) });
        const once = idempotent(op, { store, key: (n) => `key-${n}`, ttlMs: 60_000 });
        const latencies: number[] = [];
        let left = WRITES;
        const started = performance.now();
        await Promise.all(
          Array.from({ length: writers }, async () => {
            while (left-- > 0) {
              const t = performance.now();
              await once(++fresh);
              latencies.push(performance.now() - t);
            }
          }),
        );
        const seconds = (performance.now() - started) / 1000;
        latencies.sort((a, b) => a - b);
        const at = (q: number) =>
          (latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0).toFixed(2);
        rows.push([String(writers), name, at(0.5), at(0.99), (WRITES / seconds).toFixed(0)]);
      }
    }
    printRows(
      'redisStore() with a replica: a first run (claim, run, complete) per write, with and without waitForReplicas',
      ['writers', 'store', 'p50 ms', 'p99 ms', 'writes/s'],
      rows,
    );
    console.log(`(${WRITES} writes per row, one ioredis connection, master and replica on loopback)`);
  } finally {
    client.disconnect();
    await stopAllRedis();
  }
}

export async function benchIdempotency(): Promise<void> {
  await memory();
  await redis();
  await durable();
}

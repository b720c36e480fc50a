/**
 * ctx.nothingDone() on a shared Redis: another instance waiting on the key, and the release's
 * reply lost on the way back to the instance that sent it (a proxy drops it).
 */
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { type AddressInfo, createServer, type Server, Socket } from 'node:net';
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { type IdempotentContext, idempotent, redisStore } from '../src/index.js';
import { connect, disconnectAll, sleep } from './redis.js';

/** A TCP proxy to `port` that forwards every command, and drops the replies while `drop` is set. */
async function lossyProxy(port: number) {
  const sockets = new Set<Socket>();
  const state = { drop: false, server: undefined as Server | undefined, port: 0 };
  const server = createServer((inbound) => {
    const outbound = new Socket();
    sockets.add(inbound).add(outbound);
    outbound.connect(port, '127.0.0.1');
    inbound.on('data', (chunk) => outbound.write(chunk));
    outbound.on('data', (chunk) => {
      if (!state.drop) inbound.write(chunk);
    });
    for (const s of [inbound, outbound]) {
      s.on('error', () => {});
      s.on('close', () => {
        inbound.destroy();
        outbound.destroy();
      });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  state.server = server;
  state.port = (server.address() as AddressInfo).port;
  return {
    state,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe.skipIf(!redisAvailable())('ctx.nothingDone() with redisStore(), two instances on one Redis', () => {
  let server: RedisServer;
  let proxy: Awaited<ReturnType<typeof lossyProxy>>;

  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
    proxy = await lossyProxy(server.port);
  });
  afterAll(async () => {
    disconnectAll();
    proxy.close();
    await stopAllRedis();
  });

  function busOf(events: HoldfastEvent[]) {
    const bus = createBus();
    bus.on('*', (event) => events.push(event));
    return bus;
  }

  it('the release lands though its reply is lost: waiters on the other instance run the effect once', async () => {
    const prefix = `nd:${randomUUID()}:`;
    const state = { effects: 0, runs: 0 };
    const eventsA: HoldfastEvent[] = [];
    const eventsB: HoldfastEvent[] = [];
    const charge = async (n: number) => {
      state.effects++;
      return `charged ${n}`;
    };
    // Instance B: two calls waiting on the key while A runs.
    const b = idempotent(
      async (n: number) => {
        state.runs++;
        return charge(n);
      },
      {
        store: redisStore({ client: connect(server), prefix, commandTimeout: 300 }),
        key: () => 'order-1',
        bus: busOf(eventsB),
        leaseMs: 30_000,
        wait: { timeout: 15_000, interval: 25 },
      },
    );
    // Instance A, through the proxy: a lookup that follows the signal, stopped by the abort;
    // `say()` reports that nothing was done and throws.
    let say!: () => void;
    const a = idempotent(
      async (n: number, ctx: IdempotentContext) => {
        state.runs++;
        await new Promise((_, reject) =>
          ctx.signal.addEventListener(
            'abort',
            () => {
              say = () => {
                ctx.nothingDone();
                reject(ctx.signal.reason);
              };
            },
            { once: true },
          ),
        );
        return charge(n);
      },
      {
        store: redisStore({ client: connect({ ...server, port: proxy.state.port }), prefix, commandTimeout: 300 }),
        key: () => 'order-1',
        bus: busOf(eventsA),
        leaseMs: 30_000,
      },
    );
    // The server has run the release script before (another key): with its EVALSHA answered
    // NOSCRIPT and that answer dropped, the release would never run, and the key would wait out
    // its lease (the documented case of a release the store could not confirm).
    const warm = redisStore({ client: connect(server), prefix });
    const w = await warm.claim('warm', 'fp', 1_000);
    if (w.status === 'claimed') await warm.release('warm', w.token);
    const controller = new AbortController();
    const first = a(1, { signal: controller.signal });
    while (state.runs === 0) await sleep(5);
    // Two waiters on the other instance.
    const waiters = [b(1), b(1)];
    await sleep(100);
    controller.abort(new Error('client left'));
    await expect(first).rejects.toThrow('client left');
    proxy.state.drop = true; // the release goes out and is run; its reply never comes back
    say();
    while (!eventsA.some((e) => e.type === 'idempotency.storeError')) await sleep(20);
    proxy.state.drop = false;
    expect(await Promise.all(waiters)).toEqual(['charged 1', 'charged 1']);
    expect({ effects: state.effects, runs: state.runs }).toEqual({ effects: 1, runs: 2 });
    const stored = eventsA.find((e) => e.type === 'idempotency.storeError') as
      | (HoldfastEvent & { operation?: string })
      | undefined;
    expect(stored?.operation).toBe('release');
    expect(eventsA.map((e) => e.type)).not.toContain('idempotency.lost');
  }, 30_000);
});

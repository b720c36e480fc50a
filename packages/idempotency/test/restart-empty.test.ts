/**
 * Redis restarted empty (SIGKILL, no persistence) while a call runs, two instances sharing it:
 * what the design keeps (a completion after the restart writes its record again: one run) and
 * what it cannot (a retry that comes before that runs beside the first: two runs, the second's
 * result kept), as the README says.
 */
import { createBus, type HoldfastEvent } from '@holdfast/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RedisServer, redisAvailable, startRedis, stopAllRedis } from '../../../test/support/redis.js';
import { idempotent, redisStore } from '../src/index.js';
import { connect, disconnectAll } from './redis.js';

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

describe.skipIf(!redisAvailable())('Redis restarted empty while a call runs', { timeout: 30_000 }, () => {
  let server: RedisServer;
  beforeAll(async () => {
    [server] = (await startRedis(1)) as [RedisServer];
  });
  afterAll(async () => {
    disconnectAll();
    await stopAllRedis();
  });

  /** Two instances of a service: each its own client and store, one Redis. */
  function instances(prefix: string) {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const runs: string[] = [];
    const gates = new Map<string, ReturnType<typeof gate>>();
    const make = (name: string) => {
      const client = connect(server);
      // Long enough for the client to reconnect after the restart (ioredis backs off up to 2 s).
      const store = redisStore({ client, commandTimeout: 15_000, prefix });
      const charge = idempotent(
        async (_order: { id: string }) => {
          runs.push(name);
          await gates.get(name)?.opened;
          return `charged by ${name}`;
        },
        { store, key: (o) => o.id, leaseMs: 60_000, bus },
      );
      return { client, charge };
    };
    return { a: make('a'), b: make('b'), runs, events, gates };
  }

  it('the owner completes after the restart: its record is written again, and a retry on another instance replays it (one run)', async () => {
    const { a, b, runs, gates } = instances('restart-complete:');
    await Promise.all([a.client.ping(), b.client.ping()]);
    const held = gate();
    gates.set('a', held);
    const first = a.charge({ id: 'o-1' });
    while (runs.length === 0) await new Promise((resolve) => setImmediate(resolve));
    await server.restart(); // the in-progress record is gone
    await a.client.ping(); // reconnected
    held.open();
    expect(await first).toBe('charged by a');
    expect(await b.charge({ id: 'o-1' })).toBe('charged by a');
    expect(runs).toEqual(['a']);
  });

  it('a retry on another instance before the owner completes runs beside it (two runs: documented); the retry result is kept, the owner is told its completion was stale', async () => {
    const { a, b, runs, gates, events } = instances('restart-retry:');
    await Promise.all([a.client.ping(), b.client.ping()]);
    const held = gate();
    gates.set('a', held);
    const first = a.charge({ id: 'o-1' });
    while (runs.length === 0) await new Promise((resolve) => setImmediate(resolve));
    // Before the restart the key is in progress: the retry is refused.
    await expect(b.charge({ id: 'o-1' })).rejects.toMatchObject({ code: 'E_IDEMPOTENCY_CONFLICT' });
    await server.restart();
    await b.client.ping();
    expect(await b.charge({ id: 'o-1' })).toBe('charged by b'); // Redis forgot the claim: it runs again
    held.open();
    expect(await first).toBe('charged by a'); // its caller gets what its run produced
    expect(events.map((e) => e.type)).toContain('idempotency.staleCompletion');
    expect(await a.charge({ id: 'o-1' })).toBe('charged by b');
    expect(runs).toEqual(['a', 'b']);
  });
});

import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { afterEach, expect, it, vi } from 'vitest';
import { primaryRow, replicaRow } from './support/pg-rows.js';

/**
 * The other side of the partition bound (pg-roles-partition.test.ts): a set at pgRoles' defaults
 * (interval 2 s, timeout 1 s) and `maxLag` 1 s, on a fake clock, whose primary answers slowly but
 * answers. Reads under `maxLag` must stay on the caught-up replica: none refused for nothing.
 */

const lsn = (n: number) => `0/${(0x6000000 + n * 0x100).toString(16).toUpperCase()}`;

afterEach(() => {
  vi.useRealTimers();
});

it('a slow primary (checks near their timeout, one timed out, idle for minutes, bursts, 64+ sightings): the caught-up replica keeps every read', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  let written = 1;
  let latency = 20;
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const primary = {
    query: async () => {
      const row = { ...primaryRow(1, lsn(written)), started: '1' };
      await sleep(latency);
      return { rows: [row] };
    },
  } as unknown as PgQueryable;
  // Streams at once: it has replayed all the primary wrote.
  const replica = {
    query: async () => ({ rows: [{ ...replicaRow(1, lsn(written)), started: '2' }] }),
  } as unknown as PgQueryable;
  const db = failover({
    bus: createBus(),
    policies: false,
    retry: false,
    endpoints: [
      { name: 'primary', target: primary },
      { name: 'replica', target: replica },
    ],
    roles: pgRoles({ maxLag: 1_000 }),
  });
  const served: Record<string, Record<string, number>> = {};
  async function phase(name: string, ms: number, write: (t: number) => void) {
    const t: Record<string, number> = { replica: 0, primary: 0, refused: 0 };
    served[name] = t;
    for (let at = 0; at < ms; at += 100) {
      write(at);
      const r = await db.execute((e) => e.name, { intent: 'read' }).catch(() => 'refused');
      t[r] = (t[r] ?? 0) + 1;
      await vi.advanceTimersByTimeAsync(100);
    }
  }
  try {
    await vi.advanceTimersByTimeAsync(5_000);
    await phase('steady, a write every 100 ms (75 checks: sightings thinned past 64)', 150_000, () => written++);
    latency = 950; // a check takes 950 of its 1000 ms
    await phase('checks near their timeout', 30_000, () => written++);
    latency = 1_200; // one check times out
    await vi.advanceTimersByTimeAsync(100);
    await phase('one check timed out', 3_000, () => written++);
    latency = 20;
    await phase('recovered', 10_000, () => written++);
    await phase('idle for 5 min', 300_000, () => {});
    await phase('bursts: 500 writes at once every 10 s', 60_000, (at) => {
      if (at % 10_000 === 0) written += 500;
    });
    console.log(JSON.stringify(served));
    for (const [name, t] of Object.entries(served))
      if (name !== 'one check timed out')
        expect({ name, ...t }).toEqual({ name, replica: t.replica, primary: 0, refused: 0 });
  } finally {
    db.dispose();
  }
}, 60_000);

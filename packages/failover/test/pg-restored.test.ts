import type { Endpoint } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { afterEach, expect, it, vi } from 'vitest';

/**
 * `pgRoles()` raises a replica's lag from its cluster's primary, keyed by the system identifier.
 * A cluster restored from a base backup keeps that identifier (and, without archive recovery,
 * its timeline) but writes a history of its own, from an older LSN: the old primary's sightings
 * say nothing of the replicas of the restored one.
 */

interface Row {
  replica: boolean;
  walfile: string | null;
  checkpoint_timeline: number;
  system: string;
  flushed: string | null;
  lsn: string;
  lag: number | null;
}

/** A server answering the role query with `row()`: what pgRoles reads, and nothing else. */
function server(row: () => Row): Endpoint<PgQueryable> {
  const target: PgQueryable = { query: async () => ({ rows: [row()] }) } as unknown as PgQueryable;
  return { name: 'db', target } as Endpoint<PgQueryable>;
}

const primaryAt = (lsn: string, segment: string): Row => ({
  replica: false,
  walfile: `0000000100000000${segment}`,
  checkpoint_timeline: 1,
  system: '7400000000000000001',
  flushed: lsn,
  lsn,
  lag: null,
});

afterEach(() => {
  vi.useRealTimers();
});

it('a replica of a primary restored from a backup (same system identifier, same timeline, older LSN) is not held behind the old primary', async () => {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
  const roles = pgRoles<PgQueryable>({ timeout: 1_000 });
  const check = roles.check as (e: Endpoint<PgQueryable>) => Promise<{ role: string; lag?: number }>;

  // The old primary, at 0/9000000, seen for a minute before the disaster.
  let lsn = 0x9000000;
  const old = server(() => primaryAt(`0/${lsn.toString(16).toUpperCase()}`, '00000009'));
  for (let i = 0; i < 6; i++) {
    await check(old);
    lsn += 0x100;
    vi.setSystemTime(Date.now() + 10_000);
  }

  // Restored from a base backup taken at 0/3000000: a primary again, on timeline 1, with a
  // freshly built replica that has replayed all its primary flushed.
  vi.setSystemTime(Date.now() + 60_000);
  const restored = server(() => primaryAt('0/3000100', '00000003'));
  const replica = server(() => ({
    replica: true,
    walfile: null,
    checkpoint_timeline: 1,
    system: '7400000000000000001',
    flushed: null,
    lsn: '0/3000100',
    lag: 0,
  }));
  expect((await check(restored)).role).toBe('primary');
  vi.setSystemTime(Date.now() + 1_000);
  const seen = await check(replica);
  expect(seen.role).toBe('replica');
  expect(seen.lag).toBe(0);
});

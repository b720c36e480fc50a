import type { Endpoint } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { afterEach, vi } from 'vitest';

/**
 * Rows as `pgRoles()`'s role query returns them, for one cluster (one system identifier), and a
 * check on a clock the test moves (fake Date and performance, put back after each test).
 */

const system = '7400000000000000001';

/** A target whose role query answers `row()`. */
export function server(row: () => object): Endpoint<PgQueryable> {
  const target = { query: async () => ({ rows: [row()] }) } as unknown as PgQueryable;
  return { name: 'db', target } as Endpoint<PgQueryable>;
}

export const primaryRow = (timeline: number, lsn: string) => ({
  replica: false,
  walfile: `0000000${timeline}00000000000000${lsn.slice(2, 4).padStart(2, '0')}`,
  checkpoint_timeline: timeline,
  system,
  flushed: lsn,
  lsn,
  lag: null,
});

export const replicaRow = (timeline: number, lsn: string) => ({
  replica: true,
  walfile: null,
  checkpoint_timeline: timeline,
  system,
  flushed: null,
  lsn,
  lag: 0,
});

afterEach(() => {
  vi.useRealTimers();
});

/** A fresh `pgRoles()`'s check, on fake Date and performance. */
export function rolesOf() {
  vi.useFakeTimers({ toFake: ['Date', 'performance'] });
  const roles = pgRoles<PgQueryable>({ timeout: 1_000 });
  return roles.check as (e: Endpoint<PgQueryable>) => Promise<{ role: string; lag?: number }>;
}

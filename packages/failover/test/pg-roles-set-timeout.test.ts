import { createBus } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { type PgQueryable, pgRoles } from '@holdfast/failover/pg';
import { expect, it, vi } from 'vitest';
import { primaryRow, replicaRow } from './support/pg-rows.js';

/**
 * `{ ...pgRoles(), timeout: 3_000 }`: the set waits 3 s for a check, but pgRoles() timed its own
 * query out at its default 1 s (and sent `query_timeout: 1000`): a server answering in 1.5 s was
 * unreachable, and a primary answering in 1.5 s took no write.
 */

/** A target whose role query answers `row` after `ms` (on the fake clock), recording the timeouts it was sent. */
const target = (row: object, ms: number, sent: (number | undefined)[]): PgQueryable =>
  ({
    query: (config: { query_timeout?: number }) => {
      sent.push(config.query_timeout);
      return new Promise((resolve) => setTimeout(() => resolve({ rows: [row] }), ms));
    },
  }) as unknown as PgQueryable;

it('a set whose timeout is longer than pgRoles’ own waits that long for the role query, and sends it as query_timeout', async () => {
  vi.useFakeTimers({ toFake: ['Date', 'performance', 'setTimeout', 'clearTimeout'] });
  const sent: (number | undefined)[] = [];
  const db = failover({
    endpoints: [
      { name: 'a', target: target(primaryRow(3, '0/5000000'), 1_500, sent) },
      { name: 'r', target: target(replicaRow(3, '0/5000000'), 1_500, sent) },
    ],
    roles: { ...pgRoles<PgQueryable>(), timeout: 3_000 },
    bus: createBus(),
    policies: false,
  });
  try {
    await vi.advanceTimersByTimeAsync(1_600);
    expect(db.snapshot().endpoints.map((e) => e.discovered)).toEqual(['primary', 'replica']);
    // The replica's first check started before the primary had answered (the set's first round):
    // it is asked again once the primary has, with the same timeout.
    expect(sent).toEqual([3_000, 3_000, 3_000]);
    expect(await db.execute((e) => e.name)).toBe('a');
  } finally {
    db.dispose();
    vi.useRealTimers();
  }
});

/**
 * A set's own refusals (no endpoint could take the call, no primary to write to) are local
 * refusals: nothing was sent, so a breaker around the set does not count them.
 */

import { circuitBreaker } from '@holdfast/breaker';
import { isLocalRefusal } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { failover, NoPrimaryError, type RoleReport } from '../src/index.js';
import { harness } from './support.js';

const primary = (token: unknown): RoleReport => ({ role: 'primary', token });
const replica: RoleReport = { role: 'replica', token: [1, 0n], lag: 0 };

describe('a breaker around a roles set with no primary for a moment', () => {
  // The primary dies; until a replica is promoted, writes are refused with E_NO_PRIMARY, nothing
  // sent. Counted as the database's failures, they opened the breaker, which then refused every
  // write (E_CIRCUIT_OPEN) for `openFor` after the promotion: 30 s of writes lost to a server
  // that was back within 2.
  it('does not count E_NO_PRIMARY: the first write after the promotion goes through', async () => {
    const { clock, bus } = harness();
    const reports: Record<string, RoleReport | 'down'> = { a: primary([1, 5n]), b: replica };
    const check = async (e: { name: string }) => {
      const r = reports[e.name];
      if (r === 'down') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
      return r as RoleReport;
    };
    const db = failover({
      clock,
      bus,
      endpoints: [
        { name: 'a', target: 'a' },
        { name: 'b', target: 'b' },
      ],
      roles: { check, interval: 1_000 },
      policies: false,
    });
    const guard = circuitBreaker({ name: 'orders-db', consecutiveFailures: 3, clock, bus, policies: false });
    const write = () => guard.execute(() => db.execute((e) => e.name)).catch((e: unknown) => e);
    await clock.advance(0);
    expect(await write()).toBe('a');
    reports.a = 'down';
    await clock.advance(2_000); // two failed checks: unreachable, no primary
    const refused = [await write(), await write(), await write(), await write()];
    expect(refused.map((e) => (e as { code?: string }).code)).toEqual(Array(4).fill('E_NO_PRIMARY'));
    expect(refused[0]).toBeInstanceOf(NoPrimaryError);
    expect(isLocalRefusal(refused[0])).toBe(true);
    reports.b = primary([2, 6n]);
    await clock.advance(1_000);
    expect(guard.state).toBe('closed');
    expect(await write()).toBe('b');
    db.dispose();
  });
});

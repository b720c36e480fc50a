import { expect, it } from 'vitest';
import { failover, type RoleReport } from '../src/index.js';
import { harness } from './support.js';

/**
 * Hostile review of split-brain visibility and of replica lag under failing role checks.
 */

type Answer = RoleReport | 'down' | 'hang';

function set(answers: Record<string, () => Answer>, roles: { maxLag?: number; unreachableAfter?: number } = {}) {
  const h = harness();
  const check = (e: { name: string }) => {
    const a = (answers[e.name] as () => Answer)();
    if (a === 'hang') return new Promise<RoleReport>(() => {});
    if (a === 'down') return Promise.reject(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    return Promise.resolve(a);
  };
  const compare = (x: unknown, y: unknown) => Math.sign((x as [number])[0] - (y as [number])[0]);
  const db = failover({
    name: 'orders-db',
    clock: h.clock,
    bus: h.bus,
    policies: false,
    endpoints: Object.keys(answers),
    roles: { check, compare, interval: 1_000, timeout: 500, ...roles },
  });
  return { db, ...h };
}

it('dispose() during a split brain tells its end: an alert that saw the start is not left open', async () => {
  const { db, clock, of } = set({
    a: () => ({ role: 'primary', token: [3, 1n] }),
    b: () => ({ role: 'primary', token: [3, 2n] }),
  });
  await clock.advance(0);
  const since = clock.now();
  expect(of('failover.splitBrain').map((e) => e.active)).toEqual([true]);
  await clock.advance(2_000);
  db.dispose();
  const events = of('failover.splitBrain');
  expect(events.map((e) => e.active)).toEqual([true, false]);
  expect(events[1]).toMatchObject({ source: 'orders-db', endpoints: ['a', 'b'], since });
  expect(events[1]?.time).toBe(clock.now());
  // Once: a second dispose() tells nothing more.
  db.dispose();
  expect(of('failover.splitBrain')).toHaveLength(2);
});

it('dispose() with no split brain tells nothing', async () => {
  const { db, clock, of } = set({
    a: () => ({ role: 'primary', token: [3, 1n] }),
    b: () => ({ role: 'replica', token: [3, 1n], lag: 0 }),
  });
  await clock.advance(0);
  db.dispose();
  expect(of('failover.splitBrain')).toEqual([]);
});

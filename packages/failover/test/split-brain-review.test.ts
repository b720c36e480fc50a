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

it('a replica whose role checks time out has an unknown lag from the first failed check: under maxLag it takes no read on its old lag 0', async () => {
  let r: Answer = { role: 'replica', token: [3, 1n], lag: 0 };
  const { db, clock } = set(
    {
      a: () => ({ role: 'primary', token: [3, 1n] }),
      r: () => r,
    },
    { maxLag: 5_000, unreachableAfter: 3 },
  );
  const read = () => db.execute((e) => e.name, { intent: 'read' });
  await clock.advance(0);
  expect(await read()).toBe('r');
  r = 'hang';
  // Its next check times out (interval 1 s, timeout 0.5 s): still a replica, lag unknown.
  await clock.advance(1_000);
  await clock.advance(500);
  const shown = db.snapshot().endpoints[1];
  expect(shown?.discovered).toBe('replica');
  expect(shown?.lag).toBeNull();
  expect(await read()).toBe('a');
  // It answers again: reads are back.
  r = { role: 'replica', token: [3, 1n], lag: 0 };
  await clock.advance(1_000);
  expect(db.snapshot().endpoints[1]?.lag).toBe(0);
  expect(await read()).toBe('r');
  db.dispose();
});

it('a replica busy with reads whose check times out (calls answered meanwhile) stays a replica, but its lag is unknown too', async () => {
  let r: Answer = { role: 'replica', token: [3, 1n], lag: 0 };
  const { db, clock } = set(
    {
      a: () => ({ role: 'primary', token: [3, 1n] }),
      r: () => r,
    },
    { maxLag: 5_000 },
  );
  await clock.advance(0);
  r = 'hang';
  await clock.advance(1_000);
  // A read answered by r while its check hangs: busy, not gone.
  expect(await db.execute((e) => e.name, { intent: 'read' })).toBe('r');
  await clock.advance(500);
  expect(db.snapshot().endpoints[1]).toMatchObject({ discovered: 'replica', lag: null });
  expect(await db.execute((e) => e.name, { intent: 'read' })).toBe('a');
  db.dispose();
});

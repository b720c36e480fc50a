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
  // Disposed, not ended by the servers: an alert must not read it as resolved.
  expect(events[0]?.disposed).toBe(false);
  expect(events[1]).toMatchObject({ source: 'orders-db', endpoints: ['a', 'b'], since, disposed: true });
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

it('a tie whose one side flaps between answering and silent is one split brain: one start, no end, the same since', async () => {
  let round = 0;
  const { db, clock, of } = set({
    a: () => ({ role: 'primary', token: [3, 1n] }),
    b: () => (round % 2 === 0 ? { role: 'primary', token: [3, 2n] } : 'down'),
    r: () => ({ role: 'replica', token: [3, 1n], lag: 0 }),
  });
  await clock.advance(0);
  const since = db.snapshot().splitBrain?.since;
  for (round = 1; round <= 200; round++) await clock.advance(1_000);
  expect(of('failover.splitBrain').map((e) => e.active)).toEqual([true]);
  expect(db.snapshot().splitBrain).toEqual({ endpoints: ['a', 'b'], since });
  db.dispose();
  expect(of('failover.splitBrain').map((e) => e.active)).toEqual([true, false]);
});

it('a tie that really comes and goes (one side answering replica, then primary again) tells each, and no more often than the role changes it follows', async () => {
  let round = 0;
  const { db, clock, of } = set({
    a: () => ({ role: 'primary', token: [3, 1n] }),
    b: () => (round % 2 === 0 ? { role: 'primary', token: [3, 2n] } : { role: 'replica', token: [3, 1n], lag: 0 }),
  });
  await clock.advance(0);
  for (round = 1; round <= 100; round++) await clock.advance(1_000);
  const split = of('failover.splitBrain');
  const roles = of('failover.role').filter((e) => e.endpoint === 'b');
  // Each one is a real change of where writes go: held, then to a, then held.
  expect(split.length).toBeGreaterThan(0);
  expect(split.length).toBeLessThanOrEqual(roles.length);
  // Strictly alternating: never two starts (or two ends) in a row.
  expect(split.map((e) => e.active)).toEqual(split.map((_e, i) => i % 2 === 0));
  db.dispose();
});

it('three primaries tied: one rebuilt leaves the other two in it (no event, the same since); the end names the last two', async () => {
  const c: { report: Answer } = { report: { role: 'primary', token: [3, 3n] } };
  const b: { report: Answer } = { report: { role: 'primary', token: [3, 2n] } };
  const { db, clock, of } = set({
    a: () => ({ role: 'primary', token: [3, 1n] }),
    b: () => b.report,
    c: () => c.report,
  });
  await clock.advance(0);
  const since = clock.now();
  expect(db.snapshot().splitBrain).toEqual({ endpoints: ['a', 'b', 'c'], since });
  c.report = { role: 'replica', token: [3, 1n], lag: 0 };
  await clock.advance(1_000);
  expect(db.snapshot().splitBrain).toEqual({ endpoints: ['a', 'b'], since });
  expect(of('failover.splitBrain')).toHaveLength(1);
  await expect(db.execute((e) => e.name)).rejects.toMatchObject({ code: 'E_NO_PRIMARY' });
  b.report = 'down';
  await clock.advance(1_000);
  expect(db.snapshot().splitBrain).toEqual({ endpoints: ['a', 'b'], since });
  b.report = { role: 'replica', token: [3, 1n], lag: 0 };
  for (let i = 0; i < 3; i++) await clock.advance(1_000);
  expect(db.snapshot().splitBrain).toBeNull();
  expect(of('failover.splitBrain').map((e) => [e.active, e.endpoints, e.since])).toEqual([
    // The start names those tied when it started (c answered after a and b), the end those tied at the end.
    [true, ['a', 'b'], since],
    [false, ['a', 'b'], since],
  ]);
  expect(of('failover.splitBrain').map((e) => e.disposed)).toEqual([false, false]);
  expect(await db.execute((e) => e.name)).toBe('a');
  db.dispose();
});

it('a listener that mutates the event’s endpoints changes nothing the set shows', async () => {
  const { db, clock, bus } = set({
    a: () => ({ role: 'primary', token: [3, 1n] }),
    b: () => ({ role: 'primary', token: [3, 2n] }),
  });
  bus.on('failover.splitBrain', (e) => (e.endpoints as string[]).push('evil'));
  await clock.advance(0);
  expect(db.snapshot().splitBrain?.endpoints).toEqual(['a', 'b']);
  db.dispose();
});

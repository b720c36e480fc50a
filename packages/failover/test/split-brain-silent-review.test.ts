import { expect, it } from 'vitest';
import { failover, type RoleReport } from '../src/index.js';
import { harness } from './support.js';

/**
 * Review: two primaries that tie (a split brain) are both fenced. One of them missing checks (a
 * freeze, a partition) is no end of it: before, the other was elected at once and took writes that
 * are lost if the operator keeps the silent one. Real servers: test/failover-pg-split-brain.test.ts.
 */

interface Node {
  report: RoleReport | 'down';
  writes: number;
}

function split() {
  const a: Node = { report: { role: 'primary', token: [3, 100n] }, writes: 0 };
  const b: Node = { report: { role: 'primary', token: [3, 900n] }, writes: 0 };
  const check = async (e: { target: Node }) => {
    if (e.target.report === 'down') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    return e.target.report;
  };
  // Timeline alone orders them, as pgRoles() does: one timeline, one primary.
  const compare = (x: unknown, y: unknown) => Math.sign((x as [number])[0] - (y as [number])[0]);
  const { clock, bus } = harness();
  const db = failover({
    clock,
    bus,
    endpoints: [
      { name: 'a', target: a },
      { name: 'b', target: b },
    ],
    roles: { check, compare, interval: 1_000, timeout: 500 },
  });
  const write = () =>
    db
      .execute(async (e) => {
        e.target.writes++;
        return e.name;
      })
      .catch((error: { code: string; message: string }) => error);
  return { a, b, db, clock, write };
}

it('the other of two tied primaries silent: no write reaches the one left, for as long as it is silent', async () => {
  const { b, db, clock, write } = split();
  await clock.advance(0);
  expect(await write()).toMatchObject({ code: 'E_NO_PRIMARY', roles: { a: 'fenced', b: 'fenced' } });
  b.report = 'down';
  for (let i = 0; i < 10; i++) await clock.advance(1_000);
  expect(await write()).toMatchObject({
    code: 'E_NO_PRIMARY',
    roles: { a: 'fenced', b: 'unreachable' },
    message: expect.stringContaining('split brain'),
  });
  // Back, still claiming primary on the timeline: a tie again.
  b.report = { role: 'primary', token: [3, 950n] };
  await clock.advance(1_000);
  expect(await write()).toMatchObject({ code: 'E_NO_PRIMARY', roles: { a: 'fenced', b: 'fenced' } });
  db.dispose();
});

it('the silent one rebuilt as a replica, or drained by the operator: the one left takes writes', async () => {
  for (const resolve of ['replica', 'drain'] as const) {
    const { a, b, db, clock, write } = split();
    await clock.advance(0);
    b.report = 'down';
    await clock.advance(1_000);
    await clock.advance(1_000);
    expect(await write()).toMatchObject({ code: 'E_NO_PRIMARY' });
    if (resolve === 'replica') b.report = { role: 'replica', token: [3, 100n], lag: 0 };
    else void db.drain('b');
    await clock.advance(1_000);
    expect(await write()).toBe('a');
    expect(a.writes).toBe(1);
    db.dispose();
  }
});

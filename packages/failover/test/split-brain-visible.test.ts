import { createPolicyRegistry, healthReport } from '@holdfast/core';
import { expect, it } from 'vitest';
import { failover, type RoleReport } from '../src/index.js';
import { harness } from './support.js';

/**
 * A split brain (two primaries tied on one timeline, or one of them silent) holds every write. Before,
 * only the `E_NO_PRIMARY` message said so: the snapshot, the health report and the bus showed two
 * fenced endpoints (or one fenced, one unreachable) and `2 endpoints up`. Real servers:
 * test/failover-pg-split-brain.test.ts.
 */

interface Node {
  report: RoleReport | 'down';
}

const A = 'postgres://orders:hunter2@10.0.0.21/orders';
const B = 'postgres://orders:hunter2@10.0.0.22/orders?password=hunter2';

function split(aTimeline = 3) {
  const a: Node = { report: { role: 'primary', token: [aTimeline, 100n] } };
  const b: Node = { report: { role: 'primary', token: [3, 900n] } };
  const spare: Node = { report: { role: 'replica', token: [3, 100n], lag: 0 } };
  const nodes = new Map<string, Node>([
    [A, a],
    [B, b],
    ['spare', spare],
  ]);
  const check = async (e: { name: string; target: unknown }) => {
    const node = nodes.get(e.target as string) as Node;
    if (node.report === 'down') throw Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    return node.report;
  };
  // Timeline alone orders them, as pgRoles() does: one timeline, one primary.
  const compare = (x: unknown, y: unknown) => Math.sign((x as [number])[0] - (y as [number])[0]);
  const h = harness();
  const policies = createPolicyRegistry();
  const db = failover({
    name: 'orders-db',
    clock: h.clock,
    bus: h.bus,
    policies,
    endpoints: [A, B, 'spare'],
    roles: { check, compare, interval: 1_000, timeout: 500 },
  });
  const health = () => healthReport({ policies, clock: h.clock }).checks.find((c) => c.name === 'orders-db');
  return { a, b, spare, db, health, ...h };
}

const shownA = 'postgres://***@10.0.0.21/orders';
const shownB = 'postgres://***@10.0.0.22/orders?password=***';

it('a split brain is in the snapshot (which endpoints, since when), in health (warn), and on the bus when it starts and ends', async () => {
  const { b, db, health, clock, of, events } = split();
  const started = clock.now();
  await clock.advance(0);
  expect(db.snapshot().splitBrain).toEqual({ endpoints: [shownA, shownB], since: started });
  expect(health()).toMatchObject({ status: 'warn', reason: expect.stringMatching(/split brain/) });
  expect(of('failover.splitBrain')).toMatchObject([
    { source: 'orders-db', active: true, endpoints: [shownA, shownB], since: started },
  ]);

  // One side silent: still a split brain, since the same time; no second event.
  b.report = 'down';
  for (let i = 0; i < 5; i++) await clock.advance(1_000);
  expect(db.snapshot().splitBrain).toEqual({ endpoints: [shownA, shownB], since: started });
  expect(health()).toMatchObject({ status: 'warn', reason: expect.stringMatching(/split brain/) });
  expect(of('failover.splitBrain')).toHaveLength(1);

  // Rebuilt as a replica: over. Writes go to A again.
  b.report = { role: 'replica', token: [3, 100n], lag: 0 };
  await clock.advance(1_000);
  const ended = of('failover.splitBrain');
  expect(ended).toHaveLength(2);
  expect(ended[1]).toMatchObject({ active: false, endpoints: [shownA, shownB], since: started });
  expect(ended[1]?.time).toBeGreaterThan(started);
  expect(db.snapshot().splitBrain).toBeNull();
  expect(db.snapshot().primary).toBe(shownA);
  expect(health()?.status).toBe('pass');
  // No password anywhere: not in events, not in the snapshot, not in health.
  const seen = JSON.stringify([events, db.snapshot(), health()], (_k, v) => (typeof v === 'bigint' ? String(v) : v));
  expect(seen).not.toContain('hunter2');
  db.dispose();
});

it('a split brain ended by draining one side: writes go to the other, and the end is on the bus; undrained, the drained one stays fenced', async () => {
  const { db, clock, of } = split();
  await clock.advance(0);
  await db.drain(shownB);
  // The README: tied primaries take no write "until one is rebuilt as a replica (or drained)".
  expect(db.snapshot().primary).toBe(shownA);
  expect(db.snapshot().splitBrain).toBeNull();
  expect(of('failover.splitBrain').map((e) => e.active)).toEqual([true, false]);
  // The operator kept A: B, back in service still claiming primary on the timeline, lost to it.
  db.undrain(shownB);
  await clock.advance(1_000);
  expect(db.snapshot().primary).toBe(shownA);
  expect(db.snapshot().endpoints.map((e) => e.discovered)).toEqual(['primary', 'fenced', 'replica']);
  expect(of('failover.splitBrain').map((e) => e.active)).toEqual([true, false]);
  db.dispose();
});

it('a stale primary fenced by a newer one is no split brain', async () => {
  const { db, clock, of, health } = split(2);
  await clock.advance(0);
  expect(db.snapshot().primary).toBe(shownB);
  expect(db.snapshot().splitBrain).toBeNull();
  expect(of('failover.splitBrain')).toEqual([]);
  expect(health()?.reason).not.toMatch(/split brain/);
  db.dispose();
});

it('the operator keeps the silent side (drains the one answering): back claiming primary, the silent one takes writes', async () => {
  const { a, b, db, clock, of } = split();
  await clock.advance(0);
  b.report = 'down';
  for (let i = 0; i < 3; i++) await clock.advance(1_000);
  expect(db.snapshot().splitBrain?.endpoints).toEqual([shownA, shownB]);
  await db.drain(shownA);
  expect(db.snapshot().splitBrain).toBeNull();
  expect(of('failover.splitBrain').map((e) => e.active)).toEqual([true, false]);
  // Back as it was, on the timeline it tied on: the one kept.
  b.report = { role: 'primary', token: [3, 950n] };
  for (let i = 0; i < 3; i++) await clock.advance(1_000);
  expect(db.snapshot().primary).toBe(shownB);
  expect(await db.execute((e) => e.name)).toBe(shownB);
  expect(a.report).toMatchObject({ role: 'primary' });
  db.dispose();
});

it('a tie broken by a promotion (a replica promoted onto a higher timeline): the split brain ends, writes go to it, both tied stay fenced, the silent one too once back', async () => {
  const { a, b, spare, db, clock, of } = split();
  await clock.advance(0);
  b.report = 'down';
  for (let i = 0; i < 3; i++) await clock.advance(1_000);
  spare.report = { role: 'primary', token: [4, 10n] };
  await clock.advance(1_000);
  expect(db.snapshot().primary).toBe('spare');
  expect(db.snapshot().splitBrain).toBeNull();
  expect(of('failover.splitBrain').map((e) => e.active)).toEqual([true, false]);
  expect(await db.execute((e) => e.name)).toBe('spare');
  // The silent side back as it was, on the timeline it tied on: lost to the promotion.
  b.report = { role: 'primary', token: [3, 950n] };
  for (let i = 0; i < 3; i++) await clock.advance(1_000);
  expect(db.snapshot().endpoints.map((e) => e.discovered)).toEqual(['fenced', 'fenced', 'primary']);
  expect(a.report).toMatchObject({ role: 'primary' });
  expect(of('failover.splitBrain')).toHaveLength(2);
  db.dispose();
});

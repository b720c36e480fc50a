import type { HoldfastEvent } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { explainLost, type Outcome, type Promotion, type Rig } from './support/sentinel-load.js';

/**
 * explainLost() excuses writes a failover the Sentinels started on their own took from the set.
 * It must not excuse what the set could have prevented: a write sent to the old master once the
 * set had seen the promotion (another server elected primary, a switch away), however late the
 * set gets round to calling the old master fenced or a replica.
 */
const T = 1_000_000;
const write = (endpoint: string, started: number): Outcome => ({
  intent: 'write',
  started,
  endpoint,
  code: undefined,
  key: `w:${started}`,
});
const role = (endpoint: string, r: string, time: number, previous = 'primary') =>
  ({ type: 'failover.role', source: 'db', time, endpoint, role: r, previous }) as unknown as HoldfastEvent;
const switched = (from: string, to: string, time: number) =>
  ({ type: 'failover.switch', source: 'db', time, from, to, reason: 'failover' }) as unknown as HoldfastEvent;
const rigOf = (promotions: Promotion[], events: HoldfastEvent[]) => ({ promotions, events }) as unknown as Rig;
// The test's own failover (redis-0 → redis-1), then one the Sentinels started (redis-1 → redis-2) at T.
const promotions: Promotion[] = [
  { at: T - 10_000, from: 'redis-0', to: 'redis-1' },
  { at: T, from: 'redis-1', to: 'redis-2' },
];

describe('explainLost()', () => {
  it('excuses a write the old master took before the set saw the promotion', () => {
    const events = [role('redis-2', 'primary', T + 400, 'replica'), role('redis-1', 'fenced', T + 400)];
    const lost = [write('redis-1', T + 100)];
    expect(explainLost(rigOf(promotions, events), lost)).toEqual({ explained: lost, unexplained: [] });
  });

  it('does not excuse a write sent to the old master after the set elected the new one', () => {
    // A set that elects redis-2 but keeps writing to redis-1 until the Sentinels make it a replica.
    const events = [
      role('redis-2', 'primary', T + 400, 'replica'),
      switched('redis-1', 'redis-2', T + 400),
      role('redis-1', 'replica', T + 3_000),
    ];
    const before = write('redis-1', T + 100);
    const after = write('redis-1', T + 1_500);
    expect(explainLost(rigOf(promotions, events), [before, after])).toEqual({
      explained: [before],
      unexplained: [after],
    });
  });

  it('does not excuse a write after the set switched away, even with no role event for the new master', () => {
    const events = [switched('redis-1', 'redis-2', T + 400), role('redis-1', 'replica', T + 3_000)];
    const after = write('redis-1', T + 1_500);
    expect(explainLost(rigOf(promotions, events), [after]).unexplained).toEqual([after]);
  });

  it("never excuses a write on the test's own old master (the frozen or killed one)", () => {
    const events = [role('redis-1', 'fenced', T + 400), role('redis-0', 'replica', T + 400)];
    const lost = [write('redis-0', T + 100)];
    expect(explainLost(rigOf(promotions, events), lost).unexplained).toEqual(lost);
  });
});

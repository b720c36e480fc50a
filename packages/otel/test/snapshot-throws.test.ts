/**
 * One policy of a user's own whose snapshot throws when read (a getter on a closed pool) must not
 * cost a collection the other policies' gauges.
 */
import { describe, expect, it } from 'vitest';
import { metricNames } from '../src/index.js';
import { collectPoints } from './collect.js';

/** What a class with a getter on a pool closed meanwhile returns from snapshot(). */
const closedPool = () => ({
  name: 'bad',
  get state(): string {
    throw new TypeError('pool closed');
  },
  get balance(): number {
    throw new TypeError('pool closed');
  },
  get endpoints(): string[] {
    throw new TypeError('pool closed');
  },
  get limit(): number {
    throw new TypeError('pool closed');
  },
  get running(): number {
    throw new TypeError('pool closed');
  },
});

describe('instrument(), a snapshot that throws when read', () => {
  it('each kind in turn: the other breaker is still reported open', async () => {
    for (const kind of ['breaker', 'failover', 'budget', 'concurrency', 'bulkhead']) {
      const m = collectPoints();
      try {
        m.policies.register('breaker', 'ok', { snapshot: () => ({ name: 'ok', state: 'open' }) });
        m.policies.register(kind, 'bad', { snapshot: closedPool });
        const open = await m.value(metricNames.breakerState, {
          'holdfast.policy.name': 'ok',
          'holdfast.breaker.state': 'open',
        });
        // Before the fix: undefined for breaker, failover and budget (the callback threw).
        expect({ kind, open }).toEqual({ kind, open: 1 });
      } finally {
        await m.close();
      }
    }
  });
});

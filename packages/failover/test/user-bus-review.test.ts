import { type Bus, createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { recordWarnings } from '../../../test/support/warnings.js';
import { failover } from '../src/index.js';

/** A bus of the user's own (an adapter to their logger) whose emit throws on failover.eject. */
function brokenBus(seen: string[]): Bus {
  const inner = createBus();
  return {
    on: inner.on.bind(inner) as Bus['on'],
    once: inner.once.bind(inner) as Bus['once'],
    wants: () => true,
    emit: (event) => {
      seen.push(event.type);
      if (event.type === 'failover.eject') throw new Error('my bus adapter broke');
    },
  };
}

const warnings = recordWarnings();

describe('failover with a { bus } of the user own that throws on failover.eject (review)', () => {
  it('the call whose settling judged the failure rate keeps its answer, and the ejected endpoint takes no more calls', async () => {
    const clock = new ManualClock(1_000_000);
    const seen: string[] = [];
    const set = failover({
      clock,
      bus: brokenBus(seen),
      endpoints: ['a', 'b', 'c'],
      retry: false,
      panicThreshold: 0,
      policies: false,
      ejection: {
        baseTime: 60_000,
        maxShare: 0.5,
        failureRate: { threshold: 0.4, requestVolume: 20, minimumHosts: 3, interval: 1_000 },
      },
    });
    const taken: Record<string, number> = { a: 0, b: 0, c: 0 };
    const count = (name: string) => (taken[name] = (taken[name] ?? 0) + 1);
    const call = () =>
      set.execute(async (e) => {
        const n = count(e.name);
        if (e.name === 'b' && n % 2 === 0) throw new Error('b: HTTP 503');
        return e.name;
      });
    // 99 calls, 33 each, b failing every other one (never 5 in a row): round-robin sends the next to a.
    for (let i = 0; i < 99; i++) {
      await call().catch(() => {});
      await clock.advance(10);
    }
    await clock.advance(20);
    expect(seen).not.toContain('failover.eject');
    // The first call after the interval judges it (b is over the threshold): it went to a and
    // succeeded, and its answer is what the caller gets.
    await expect(call()).resolves.toBe('a');
    expect(seen).toContain('failover.eject');
    expect(set.snapshot().endpoints.map((e) => e.ejection)).toEqual(['none', 'ejected', 'none']);
    const b = taken.b;
    for (let i = 0; i < 20; i++) await call();
    expect(taken.b).toBe(b);
    await new Promise((resolve) => setImmediate(resolve));
    expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
    set.dispose();
  });
});

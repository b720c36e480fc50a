import { TimeoutError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';
import { harness, seeded } from './support.js';

describe('active health checks', () => {
  it('turns unhealthy after unhealthyAfter failing checks and healthy after healthyAfter passing ones', async () => {
    const h = harness();
    const verdicts: boolean[] = [true, false, false, true, false, false, false, true, true, false, true, true, true];
    let i = 0;
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      endpoints: ['a', 'b'],
      health: {
        interval: 1_000,
        jitter: 0,
        healthyAfter: 3,
        unhealthyAfter: 3,
        check: (e) => (e.name === 'a' ? verdicts[i++] : true),
      },
    });
    const health: string[] = [];
    for (let n = 0; n < verdicts.length; n++) {
      await h.clock.advance(n === 0 ? 0 : 1_000);
      health.push(set.snapshot().endpoints[0]?.health as string);
    }
    expect(health.join(' ')).toBe(
      [
        'healthy healthy healthy healthy healthy healthy unhealthy',
        'unhealthy unhealthy unhealthy unhealthy unhealthy healthy',
      ].join(' '),
    );
    expect(h.of('health.change').map((e) => [e.endpoint, e.healthy, e.time - 1_000_000])).toEqual([
      ['a', false, 6_000],
      ['a', true, 12_000],
    ]);
    set.dispose();
  });

  it('fails a check that throws, rejects, resolves false or outlives its timeout, and aborts its signal', async () => {
    const h = harness();
    const signals: AbortSignal[] = [];
    const checks = [
      () => {
        throw new Error('sync');
      },
      () => Promise.reject(new Error('async')),
      () => false,
      (signal: AbortSignal) => {
        signals.push(signal);
        return new Promise(() => {});
      },
    ];
    let n = 0;
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      endpoints: ['a', 'b'],
      health: {
        interval: 1_000,
        jitter: 0,
        timeout: 250,
        unhealthyAfter: 4,
        check: (e, signal) => (e.name === 'a' ? (checks[n++] ?? (() => true))(signal) : true),
      },
    });
    await h.clock.advance(3_000);
    expect(set.snapshot().endpoints[0]?.health).toBe('healthy');
    await h.clock.advance(249);
    expect(signals[0]?.aborted).toBe(false);
    await h.clock.advance(1);
    expect(signals[0]?.reason).toBeInstanceOf(TimeoutError);
    expect(set.snapshot().endpoints[0]?.health).toBe('unhealthy');
    set.dispose();
  });

  it('waits the interval plus or minus the jitter between the end of one check and the next', async () => {
    const h = harness();
    const at: number[] = [];
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      random: seeded(3),
      endpoints: ['only'],
      health: {
        interval: 1_000,
        jitter: 0.2,
        check: () => {
          at.push(h.clock.now());
          return true;
        },
      },
    });
    await h.clock.advance(100_000);
    const gaps = at.slice(1).map((t, i) => t - (at[i] ?? 0));
    expect(gaps.length).toBeGreaterThan(80);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(800);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(1_200);
    // Jittered, not a fixed beat.
    expect(new Set(gaps).size).toBeGreaterThan(40);
    // The first check comes within one jitter's width of the start.
    expect((at[0] ?? 0) - 1_000_000).toBeLessThanOrEqual(200);
    set.dispose();
  });

  it('never runs two checks of one endpoint at once, however slow they are', async () => {
    const h = harness();
    let running = 0;
    let most = 0;
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      endpoints: ['a'],
      health: {
        interval: 100,
        jitter: 0,
        timeout: 10_000,
        check: async () => {
          running++;
          most = Math.max(most, running);
          await new Promise<void>((r) => h.clock.setTimeout(r, 1_000));
          running--;
          return true;
        },
      },
    });
    await h.clock.advance(20_000);
    expect(most).toBe(1);
    set.dispose();
  });

  it('stops every check on dispose: no timer is left', async () => {
    const h = harness();
    let checks = 0;
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      endpoints: ['a', 'b', 'c'],
      health: { interval: 1_000, check: () => ++checks > 0 },
    });
    await h.clock.advance(5_000);
    const before = checks;
    expect(before).toBeGreaterThan(10);
    set.dispose();
    expect(h.clock.pending).toBe(0);
    await h.clock.advance(10_000);
    expect(checks).toBe(before);
  });

  it('takes an ejected endpoint back once the checks have seen it fail and recover', async () => {
    const h = harness();
    let up = true;
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      endpoints: ['a', 'b'],
      retry: false,
      ejection: { consecutiveFailures: 2, baseTime: 60_000 },
      health: { interval: 1_000, jitter: 0, healthyAfter: 2, unhealthyAfter: 1, check: (e) => e.name !== 'a' || up },
    });
    up = false;
    for (let i = 0; i < 4; i++)
      await set.execute((e) => (e.name === 'a' ? Promise.reject(new Error('x')) : 1)).catch(() => {});
    expect(h.of('failover.eject')).toMatchObject([{ endpoint: 'a' }]);
    await h.clock.advance(1_000);
    expect(set.snapshot().endpoints[0]).toMatchObject({ health: 'unhealthy', ejection: 'ejected' });
    up = true;
    await h.clock.advance(2_000);
    // Long before its 60 s ejection is over.
    expect(h.of('failover.restore')).toMatchObject([{ endpoint: 'a', time: 1_003_000 }]);
    expect(set.snapshot().endpoints[0]).toMatchObject({ health: 'healthy', ejection: 'none', available: true });
    set.dispose();
  });
});

describe('a check that ignores its signal', () => {
  it('is not started again while it runs past its timeout: each turn meanwhile fails, then checks resume', async () => {
    const h = harness();
    let release = (_ok: boolean) => {};
    let started = 0;
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      endpoints: ['a', 'b'],
      health: {
        interval: 1_000,
        jitter: 0,
        timeout: 100,
        unhealthyAfter: 3,
        healthyAfter: 1,
        check: (e) => {
          if (e.name === 'b') return true;
          // The first check of a never looks at its signal: it settles only when the test says so.
          if (++started > 1) return true;
          return new Promise<boolean>((resolve) => {
            release = resolve;
          });
        },
      },
    });
    await h.clock.advance(10_000);
    expect(started).toBe(1);
    expect(h.of('health.change').map((e) => [e.endpoint, e.healthy])).toEqual([['a', false]]);
    release(true); // late: its verdict was the timeout's; the next turn starts a check again
    await h.clock.advance(500);
    expect(started).toBe(2);
    expect(h.of('health.change').map((e) => [e.endpoint, e.healthy])).toEqual([
      ['a', false],
      ['a', true],
    ]);
    set.dispose();
  });

  it('dispose() while it hangs leaves no timer', async () => {
    const h = harness();
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      endpoints: ['a'],
      health: { interval: 1_000, jitter: 0, timeout: 5_000, check: () => new Promise(() => {}) },
    });
    await h.clock.advance(1_500);
    set.dispose();
    expect(h.clock.pending).toBe(0);
  });
});

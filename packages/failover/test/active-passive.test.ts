import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';
import { harness, refused } from './support.js';

const ok = (e: { name: string }) => Promise.resolve(e.name);
const pair = [
  { name: 'primary', target: 'db-1', priority: 0 },
  { name: 'standby', target: 'db-2', priority: 1 },
];

function checked(options: { holdDown?: number; failback?: 'auto' | 'manual'; unhealthyAfter?: number } = {}) {
  const h = harness();
  const up: Record<string, boolean> = { primary: true, standby: true };
  const set = failover({
    clock: h.clock,
    bus: h.bus,
    random: h.random,
    mode: 'active-passive',
    endpoints: pair,
    holdDown: options.holdDown ?? 5_000,
    failback: options.failback ?? 'auto',
    health: {
      interval: 1_000,
      jitter: 0,
      timeout: 200,
      healthyAfter: 2,
      unhealthyAfter: options.unhealthyAfter ?? 1,
      check: (e) => up[e.name] === true,
    },
  });
  return { ...h, up, set };
}

describe('active-passive', () => {
  it('sends all traffic to the highest priority', async () => {
    const { set } = checked();
    const picks = new Set<string>();
    for (let i = 0; i < 20; i++) picks.add(await set.execute(ok));
    expect([...picks]).toEqual(['primary']);
    expect(set.active?.name).toBe('primary');
    set.dispose();
  });

  it('fails over when the primary fails its checks, and fails back only after the hold-down', async () => {
    const { set, clock, up, of } = checked();
    const t0 = clock.now();
    up.primary = false;
    await clock.advance(0);
    expect(await set.execute(ok)).toBe('standby');
    expect(of('failover.switch')).toMatchObject([{ from: 'primary', to: 'standby', reason: 'failover', time: t0 }]);
    expect(of('health.change')).toMatchObject([{ endpoint: 'primary', healthy: false }]);
    up.primary = true;
    // Two passing checks (healthyAfter) make it healthy again at t0 + 2 s...
    await clock.advance(2_000);
    expect(of('health.change').at(-1)).toMatchObject({ endpoint: 'primary', healthy: true, time: t0 + 2_000 });
    // ...and traffic stays on the standby through the 5 s hold-down.
    await clock.advance(4_999);
    expect(await set.execute(ok)).toBe('standby');
    await clock.advance(1);
    expect(await set.execute(ok)).toBe('primary');
    expect(of('failover.switch').at(-1)).toMatchObject({
      from: 'standby',
      to: 'primary',
      reason: 'failback',
      time: t0 + 7_000,
    });
    set.dispose();
  });

  it('reaches the standby within one health interval plus the check timeout when the primary hangs', async () => {
    const h = harness();
    let hung = false;
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      mode: 'active-passive',
      endpoints: pair,
      health: {
        interval: 1_000,
        jitter: 0,
        timeout: 300,
        unhealthyAfter: 1,
        check: (e) => (hung && e.name === 'primary' ? new Promise(() => {}) : true),
      },
    });
    await h.clock.advance(10);
    hung = true;
    const t0 = h.clock.now();
    await h.clock.advance(1_000 + 300);
    expect(await set.execute(ok)).toBe('standby');
    expect(h.of('failover.switch')[0]?.time).toBeLessThanOrEqual(t0 + 1_300);
    set.dispose();
  });

  it('does not flap: a primary that flaps every second changes the role at most once per hold-down', async () => {
    const { set, clock, up, of } = checked({ holdDown: 5_000 });
    const served: string[] = [];
    for (let second = 0; second < 30; second++) {
      up.primary = second % 2 === 1;
      for (let i = 0; i < 10; i++) {
        await clock.advance(100);
        served.push(await set.execute(ok));
      }
    }
    const switches = of('failover.switch');
    expect(switches.map((s) => s.to)).toEqual(['standby']);
    expect(served.slice(20).every((n) => n === 'standby')).toBe(true);
    // Then it settles, and traffic fails back once, a hold-down after it turned healthy for good.
    up.primary = true;
    await clock.advance(10_000);
    expect(await set.execute(ok)).toBe('primary');
    const times = of('failover.switch').map((s) => s.time);
    expect(times).toHaveLength(2);
    expect((times[1] ?? 0) - (times[0] ?? 0)).toBeGreaterThanOrEqual(5_000);
    set.dispose();
  });

  it("with failback: 'manual' stays on the standby until failback() is called", async () => {
    const { set, clock, up, of } = checked({ failback: 'manual' });
    up.primary = false;
    await clock.advance(0);
    up.primary = true;
    await clock.advance(60_000);
    expect(await set.execute(ok)).toBe('standby');
    expect(set.snapshot().endpoints.map((e) => e.role)).toEqual(['standby', 'active']);
    expect(set.failback()).toBe(true);
    expect(await set.execute(ok)).toBe('primary');
    expect(of('failover.switch').at(-1)).toMatchObject({ from: 'standby', to: 'primary', reason: 'manual' });
    // Already on the best endpoint: nothing to do.
    expect(set.failback()).toBe(false);
    set.dispose();
  });

  it('promotes the next priority after passive failures, retries the failed calls there, and probes the primary back', async () => {
    const h = harness();
    let primaryDown = true;
    const set = failover({
      clock: h.clock,
      bus: h.bus,
      mode: 'active-passive',
      endpoints: [...pair, { name: 'last', target: 'db-3', priority: 2 }],
      holdDown: 1_000,
      ejection: { consecutiveFailures: 3, baseTime: 10_000, maxShare: 0.5 },
    });
    const tried: string[] = [];
    const call = () =>
      set.execute(async (e) => {
        tried.push(e.name);
        if (e.name === 'primary' && primaryDown) throw refused();
        return e.name;
      });
    // Every call succeeds: the first three reach the primary, fail, and are retried on the standby.
    for (let i = 0; i < 6; i++) expect(await call()).toBe('standby');
    expect(tried).toEqual([
      'primary',
      'standby',
      'primary',
      'standby',
      'primary',
      'standby',
      'standby',
      'standby',
      'standby',
    ]);
    expect(h.of('failover.eject')).toMatchObject([{ endpoint: 'primary', ejections: 1, until: 1_000_000 + 10_000 }]);
    expect(h.of('failover.switch')).toMatchObject([{ from: 'primary', to: 'standby', reason: 'failover' }]);
    // After the ejection, one call probes the primary: it is back, so it is restored...
    primaryDown = false;
    await h.clock.advance(10_000);
    tried.length = 0;
    expect(await call()).toBe('primary');
    expect(h.of('failover.restore')).toMatchObject([{ endpoint: 'primary' }]);
    // ...but traffic fails back only after the hold-down.
    expect(await call()).toBe('standby');
    await h.clock.advance(1_000);
    expect(await call()).toBe('primary');
    expect(h.of('failover.switch').map((s) => s.reason)).toEqual(['failover', 'failback']);
    set.dispose();
  });

  it('panics when no endpoint is available: fail-fast rejects, all keeps trying by priority', async () => {
    for (const panic of ['fail-fast', 'all'] as const) {
      const h = harness();
      const set = failover({
        clock: h.clock,
        bus: h.bus,
        mode: 'active-passive',
        panic,
        endpoints: pair,
        health: { interval: 1_000, jitter: 0, unhealthyAfter: 1, check: () => false },
      });
      await h.clock.advance(0);
      expect(h.of('failover.panic')).toMatchObject([{ active: true, healthy: 0, total: 2 }]);
      expect(set.snapshot()).toMatchObject({ panic: true, active: null });
      if (panic === 'fail-fast') {
        await expect(set.execute(ok)).rejects.toMatchObject({ code: 'E_NO_HEALTHY_ENDPOINT', healthy: 0, total: 2 });
      } else {
        expect(await set.execute(ok)).toBe('primary');
      }
      set.dispose();
    }
  });

  it('draining the active endpoint moves traffic at once; undrained, it fails back after the hold-down', async () => {
    const h = harness();
    const set = failover({ clock: h.clock, bus: h.bus, mode: 'active-passive', endpoints: pair, holdDown: 2_000 });
    await set.drain('primary');
    expect(await set.execute(ok)).toBe('standby');
    set.undrain('primary');
    await h.clock.advance(1_999);
    expect(await set.execute(ok)).toBe('standby');
    await h.clock.advance(1);
    expect(await set.execute(ok)).toBe('primary');
    expect(h.of('failover.switch').map((e) => [e.to, e.reason])).toEqual([
      ['standby', 'manual'],
      ['primary', 'failback'],
    ]);
  });
});

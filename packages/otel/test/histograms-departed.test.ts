/**
 * The OpenTelemetry SDK keeps every attribute set a histogram recorded for as long as its
 * MeterProvider lives (cumulative temporality, the default: it has no way to drop one), so a
 * policy that leaves cannot take its histogram series along as it takes its counters. Per-host
 * breakers that come and go must not grow the histograms (memory, and every export) for good.
 */
import { createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { collectPoints } from './collect.js';

const warnings = recordWarnings();
const closes: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closes.splice(0)) await close();
});

const policyOf = (p: { attributes: Record<string, unknown> }) => p.attributes['holdfast.policy.name'];
const countOf = (p: { value: unknown }) => (p.value as { count: number }).count;

describe('instrument(), histograms of policies that left', () => {
  it('3,000 per-host breakers made, used and evicted in turn keep at most maxPolicies + 1 series; no call is lost', async () => {
    const policies = createPolicyRegistry();
    const c = collectPoints({ policies, maxPolicies: 20 });
    closes.push(c.close);
    const emit = (source: string, type: string) =>
      c.bus.emit({ type, source, time: 0, latency: 5, delay: 10, attempt: 2 } as unknown as HoldfastEvent);
    for (let i = 0; i < 3_000; i++) {
      const host = `https://host-${i}.example/`;
      const leave = policies.register('breaker', host, { snapshot: () => ({ state: 'closed' }) });
      emit(host, 'breaker.success');
      emit(host, 'retry.attempt');
      leave();
      // Collected now and then, as a reader does.
      if (i % 500 === 0) await c.points('holdfast.breaker.calls');
    }
    policies.register('breaker', 'live', { snapshot: () => ({ state: 'closed' }) });
    emit('live', 'breaker.success');

    const durations = await c.points('holdfast.breaker.call.duration');
    expect(durations.length).toBeLessThanOrEqual(21);
    expect(durations.reduce((sum, p) => sum + countOf(p), 0)).toBe(3_001);
    const delays = await c.points('holdfast.retry.delay');
    expect(delays.length).toBeLessThanOrEqual(21);
    expect(delays.reduce((sum, p) => sum + countOf(p), 0)).toBe(3_000);
    // The counters, which leave with their policy, still name the live one.
    expect((await c.points('holdfast.breaker.calls')).map(policyOf)).toEqual(['live']);
    await tick();
    expect(warnings.map((w) => w.code)).toContain('HOLDFAST_METRICS_CARDINALITY');
  }, 60_000);

  it('a policy that leaves and comes back keeps its histogram series', async () => {
    const policies = createPolicyRegistry();
    const c = collectPoints({ policies, maxPolicies: 2 });
    closes.push(c.close);
    for (let i = 0; i < 5; i++) {
      const leave = policies.register('breaker', 'db', { snapshot: () => ({ state: 'closed' }) });
      c.bus.emit({ type: 'breaker.success', source: 'db', time: 0, latency: 5 } as unknown as HoldfastEvent);
      leave();
    }
    const durations = await c.points('holdfast.breaker.call.duration');
    expect(durations.map((p) => [policyOf(p), countOf(p)])).toEqual([['db', 5]]);
  });
});

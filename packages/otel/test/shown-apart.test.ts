/**
 * One name per policy everywhere instrument() exports it: spans name a policy as its metrics do
 * (two whose names hide alike are `#2` apart in both), and a user's own policy named `_other` is
 * one policy, shown apart from the overflow every policy past maxPolicies shares.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { type Recorded, RecordingMeterProvider, RecordingTracerProvider } from '../../../test/support/otel-recorder.js';
import { instrument } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

const ev = (e: Record<string, unknown>) => ({ time: 1_700_000_000_000, ...e }) as unknown as HoldfastEvent;
const open = (source: string) => ev({ type: 'breaker.open', source, reason: 'failures', failureRate: 1 });
const success = (source: string) => ev({ type: 'breaker.success', source, latency: 5 });
const policyOf = (r: { attributes: Record<string, unknown> }) => r.attributes['holdfast.policy.name'];
const of = (rows: Recorded[], name: string) => rows.filter((r) => r.instrument === name);

function setup(maxPolicies = 500) {
  const bus = createBus();
  const policies = createPolicyRegistry();
  const meterProvider = new RecordingMeterProvider();
  const tracerProvider = new RecordingTracerProvider();
  cleanups.push(instrument({ bus, policies, meterProvider, tracerProvider, maxPolicies }));
  return { bus, policies, meterProvider, tracerProvider };
}

describe('instrument(), spans and metrics name a policy alike', () => {
  it('two names that hide alike are `#2` apart on their spans as in their metrics', async () => {
    const { bus, meterProvider, tracerProvider } = setup();
    const tenants = ['https://api.example/v1?api_key=KEY-OF-A', 'https://api.example/v1?api_key=KEY-OF-B'];
    for (const source of tenants) bus.emit(open(source));
    const transitions = of(await meterProvider.collect(), 'holdfast.breaker.transitions').map(policyOf);
    const spans = tracerProvider.spans.map(policyOf);
    expect(JSON.stringify([transitions, spans])).not.toMatch(/KEY-OF/);
    expect(new Set(transitions).size).toBe(2);
    expect(spans).toEqual(transitions);
  });
});

describe('instrument(), a policy of the user named `_other`', () => {
  it('is no overflow: counted apart as `_other#2`, on its spans too', async () => {
    const { bus, policies, meterProvider, tracerProvider } = setup(2);
    const leave = policies.register('breaker', '_other', { snapshot: () => ({ state: 'open' }) });
    policies.register('breaker', 'a', { snapshot: () => ({ state: 'closed' }) });
    policies.register('breaker', 'b', { snapshot: () => ({ state: 'closed' }) });
    for (const source of ['_other', 'a', 'b', 'b']) bus.emit(success(source));
    bus.emit(open('_other'));
    const rows = await meterProvider.collect();
    const calls = new Map(of(rows, 'holdfast.breaker.calls').map((r) => [policyOf(r), r.value]));
    expect(calls).toEqual(
      new Map([
        ['_other#2', 1],
        ['a', 1],
        ['_other', 2],
      ]),
    );
    const inState = of(rows, 'holdfast.breaker.state').filter((r) => r.value === 1);
    expect(new Map(inState.map((r) => [policyOf(r), r.attributes['holdfast.breaker.state']]))).toEqual(
      new Map([
        ['_other#2', 'open'],
        ['a', 'closed'],
        ['_other', 'closed'],
      ]),
    );
    expect(tracerProvider.spans.map(policyOf)).toEqual(['_other#2']);
    leave();
    const after = of(await meterProvider.collect(), 'holdfast.breaker.calls');
    expect(new Map(after.map((r) => [policyOf(r), r.value]))).toEqual(
      new Map([
        ['a', 1],
        ['_other', 2],
      ]),
    );
  });
});

describe('instrument(), fault proxies that come and go', () => {
  it('take no place from the policies for good, nor a row each: after 50 drills a new breaker is named', async () => {
    const { bus, policies, meterProvider } = setup(10);
    const toxic = (source: string, active: boolean) =>
      bus.emit(
        ev({ type: 'chaos.toxic', source, toxic: 'latency', name: 'lag', direction: 'up', active, target: 'db:5432' }),
      );
    for (let i = 0; i < 50; i++) {
      toxic(`drill-${i}`, true);
      toxic(`drill-${i}`, false);
      // Observed at 0 once, then dropped.
      await meterProvider.collect();
    }
    const toxics = of(await meterProvider.collect(), 'holdfast.chaos.toxics.active');
    expect(toxics).toEqual([]);
    policies.register('breaker', 'db', { snapshot: () => ({ state: 'closed' }) });
    bus.emit(success('db'));
    expect(of(await meterProvider.collect(), 'holdfast.breaker.calls').map(policyOf)).toEqual(['db']);
  });
});

/**
 * A latency or a delay that is no number of seconds (NaN from a stopwatch never started, Infinity
 * from a user's own policy): the call is counted, the histogram is left alone, nothing throws.
 */
import { createBus, createPolicyRegistry, type HoldfastEvent } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

const ev = (e: Record<string, unknown>) => ({ time: 1, source: 'pay', ...e }) as unknown as HoldfastEvent;
const sample = (text: string, series: string) =>
  text
    .split('\n')
    .find((l) => l.startsWith(`${series} `))
    ?.slice(series.length + 1);

describe('collect(), non-finite durations', () => {
  it('a NaN or infinite latency or delay is counted, not observed, and throws nothing', async () => {
    const errors: unknown[] = [];
    const bus = createBus({ onListenerError: (e) => errors.push(e) });
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    bus.emit(ev({ type: 'breaker.success', latency: 5 }));
    bus.emit(ev({ type: 'breaker.success', latency: Number.NaN }));
    bus.emit(ev({ type: 'breaker.failure', latency: Number.POSITIVE_INFINITY, code: 'ECONNRESET' }));
    bus.emit(ev({ type: 'retry.attempt', attempt: 2, delay: Number.NaN }));
    const text = await registry.metrics();
    stop();
    // Before the fix: [TypeError: Value is not a valid number: NaN, ...Infinity, ...NaN].
    expect(errors.map(String)).toEqual([]);
    expect(sample(text, 'holdfast_breaker_calls_total{policy="pay",outcome="success"}')).toBe('2');
    expect(sample(text, 'holdfast_breaker_calls_total{policy="pay",outcome="failure"}')).toBe('1');
    expect(sample(text, 'holdfast_retry_attempts_total{policy="pay"}')).toBe('1');
    expect(sample(text, 'holdfast_breaker_call_duration_seconds_count{policy="pay",outcome="success"}')).toBe('1');
    expect(sample(text, 'holdfast_breaker_call_duration_seconds_sum{policy="pay",outcome="success"}')).toBe('0.005');
  });
});

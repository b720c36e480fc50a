/**
 * collect() twice on one registry is a configuration mistake, and is told as every other one:
 * a HoldfastConfigError (code E_CONFIG) naming `registry`, as @holdfast/otel's instrument()
 * does for a meter provider already instrumented. It was a plain Error with no code, which
 * `hasCode(error, 'E_CONFIG')` and an `instanceof HoldfastConfigError` check both missed.
 */
import { createBus, createPolicyRegistry, HoldfastConfigError, hasCode } from '@holdfast/core';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { collect } from '../src/index.js';

describe('collect() twice on one registry', () => {
  it('throws HoldfastConfigError E_CONFIG naming registry, and keeps the first', async () => {
    const bus = createBus();
    const registry = new Registry();
    const stop = collect({ bus, registry, policies: createPolicyRegistry() });
    let error: unknown;
    try {
      collect({ bus, registry, policies: createPolicyRegistry() });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect(hasCode(error, 'E_CONFIG')).toBe(true);
    expect((error as Error).message).toBe(
      'collect: registry already has a metric "holdfast_breaker_calls_total"; stop the other collect() or use a prefix',
    );
    expect(await registry.metrics()).toContain('holdfast_breaker_calls_total');
    stop();
  });
});

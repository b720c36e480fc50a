import { createBus } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { recordWarnings } from '../../../test/support/warnings.js';
import { breakerRegistry, circuitBreaker } from '../src/index.js';

const warnings = recordWarnings();
const told = async () => {
  await new Promise((resolve) => setImmediate(resolve));
  return warnings.filter((w) => w.code === 'HOLDFAST_PREDICATE_ERROR');
};

describe('an isFailure that throws or answers nonsense is told, not only counted (review)', () => {
  it('an async isFailure (a promise is no outcome) opens the breaker on healthy calls: said once, naming the breaker', async () => {
    const breaker = circuitBreaker({
      name: 'payments',
      bus: createBus(),
      policies: false,
      minimumCalls: 5,
      isFailure: (async ({ ok }: { ok: boolean }) => !ok) as never,
    });
    for (let i = 0; i < 10; i++) await breaker.execute(() => 'ok').catch(() => undefined);
    expect(breaker.snapshot().state).toBe('open'); // counted as failures, as documented
    const said = await told();
    expect(said).toHaveLength(1);
    expect(said[0]?.message).toContain('payments');
    expect(said[0]?.message).toContain('isFailure');
  });

  it('one broken isFailure shared by a registry of 1,000 keys is told once, not once per key', async () => {
    const hosts = breakerRegistry({
      bus: createBus(),
      policies: false,
      defaults: {
        isFailure: () => {
          throw new Error('predicate bug');
        },
      },
    });
    for (let i = 0; i < 1_000; i++) await hosts.execute(`host-${i}`, () => 'ok');
    const said = await told();
    expect(said).toHaveLength(1);
    expect(said[0]?.message).toContain('predicate bug');
    hosts.dispose();
  });
});

import { createPolicyRegistry, HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { healthHandler } from '../src/index.js';

describe('healthHandler() options', () => {
  it('a bad option is refused when the handler is made, not answered with 503 on every request', () => {
    // Before: the handler was made, and each request's healthReport() threw, which it served as
    // 503 "health report failed": an instance out of rotation for good, with no word why.
    expect(() => healthHandler({ policies: 'main' as never })).toThrow(HoldfastConfigError);
    expect(() => healthHandler({ policies: 'main' as never })).toThrow(
      /^healthHandler: policies must be a PolicyRegistry/,
    );
    expect(() => healthHandler({ critcal: () => false } as never)).toThrow(
      /^healthHandler: critcal is not a known option/,
    );
    expect(() => healthHandler(null as never)).toThrow(HoldfastConfigError);
    expect(healthHandler({ policies: createPolicyRegistry(), critical: () => true })).toBeTypeOf('function');
  });
});

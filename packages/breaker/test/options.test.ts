import { HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type CircuitBreakerOptions, circuitBreaker } from '../src/index.js';

const errorOf = (options: unknown): HoldfastConfigError => {
  try {
    circuitBreaker(options as CircuitBreakerOptions);
  } catch (error) {
    if (error instanceof HoldfastConfigError) return error;
    throw error;
  }
  throw new Error('no error');
};

describe('circuitBreaker() options', () => {
  it('names the option path, the problem and the value given', () => {
    expect(errorOf({ failureRateThreshold: 50 }).message).toBe(
      'circuitBreaker: failureRateThreshold Too big: expected number to be <=1 (got 50)',
    );
    expect(errorOf({ window: { duration: 1_000, buckets: 2_000 } }).issues.map((i) => i.path)).toContain(
      'window.buckets',
    );
    expect(errorOf({ window: { duration: 5, buckets: 10 } }).message).toContain(
      'window.buckets duration / buckets must be at least 1 ms',
    );
    expect(errorOf({ halfOpen: { maxProbes: 0 } }).issues[0]?.path).toBe('halfOpen.maxProbes');
    expect(errorOf({ slowCall: { rateThreshold: 0.5 } }).issues[0]?.path).toBe('slowCall.duration');
    expect(errorOf({ openFor: { initial: 10_000, max: 1_000 } }).issues.map((i) => i.path)).toContain('openFor.max');
    expect(errorOf({ isFailure: 'yes' }).message).toContain('isFailure must be a function');
    expect(errorOf({ treshold: 1 }).message).toBe('circuitBreaker: treshold is not a known option (got 1)');
  });

  it('refuses a failure rate and consecutiveFailures together', () => {
    expect(errorOf({ failureRateThreshold: 0.3, consecutiveFailures: 5 }).message).toBe(
      'circuitBreaker: failureRateThreshold cannot be combined with consecutiveFailures (pick one rule) (got 0.3)',
    );
  });

  it('fills in documented defaults', () => {
    const snap = circuitBreaker().snapshot();
    expect(snap).toMatchObject({ name: 'breaker', state: 'closed', window: { duration: 10_000, buckets: 10 } });
  });
});

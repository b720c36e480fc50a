import { HoldfastConfigError } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { retry } from '../src/index.js';

describe('retry() options', () => {
  it('names the path and the value of a bad option', () => {
    expect(() => retry({ backoff: { initialDelay: 100, maxDelay: 10 } })).toThrow(
      'retry: backoff.maxDelay must be >= backoff.initialDelay (got 10)',
    );
    expect(() => retry({ backoff: { type: 'exponential', factor: 0.5 } })).toThrow(
      'retry: backoff.factor must be >= 1 for exponential backoff (got 0.5)',
    );
    expect(() => retry({ maxAttempts: 0 })).toThrow(/^retry: maxAttempts .*\(got 0\)$/);
    expect(() => retry({ maxAttempts: 2.5 })).toThrow(/^retry: maxAttempts .*\(got 2.5\)$/);
    expect(() => retry({ jitter: 'some' as never })).toThrow(/^retry: jitter .*\(got "some"\)$/);
    expect(() => retry({ backoff: { initialDelay: -1 } })).toThrow(/^retry: backoff.initialDelay .*\(got -1\)$/);
    expect(() => retry({ retryOn: { errors: () => true } as never })).toThrow(
      'retry: retryOn.errors is not a known option (got a function)',
    );
    expect(() => retry({ budget: {} as never })).toThrow(
      'retry: budget must be a RetryBudget (from retryBudget()) or false (got {})',
    );
    expect(() => retry({ onRetry: 'log' as never })).toThrow(/^retry: onRetry must be a function/);
  });

  it('reports every bad option at once, as a HoldfastConfigError', () => {
    try {
      retry({ maxAttempts: -1, maxElapsed: 0 });
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(HoldfastConfigError);
      expect((error as HoldfastConfigError).issues.map((i) => i.path)).toEqual(['maxAttempts', 'maxElapsed']);
    }
  });

  it('accepts a maxDelay below the default when initialDelay is also lower, and defaults it above a long initialDelay', () => {
    expect(() => retry({ backoff: { initialDelay: 10, maxDelay: 50 } })).not.toThrow();
    expect(() => retry({ backoff: { initialDelay: 60_000 } })).not.toThrow();
  });
});

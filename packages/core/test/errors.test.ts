import { describe, expect, it } from 'vitest';
import { BrokenCircuitError, HoldfastConfigError, HoldfastError, hasCode, TimeoutError } from '../src/index.js';

describe('errors', () => {
  it('carry a stable code, a literal name and the cause', () => {
    const cause = new Error('socket hang up');
    const error = new TimeoutError('payments', 250, { cause });
    expect(error.code).toBe('E_TIMEOUT');
    expect(error.name).toBe('TimeoutError');
    expect(error.message).toBe('payments: timed out after 250 ms');
    expect(error.cause).toBe(cause);
    expect(error.timeout).toBe(250);
  });

  it('instanceof follows the class hierarchy', () => {
    const error = new BrokenCircuitError('payments', 1_700_000_000_000);
    expect(error).toBeInstanceOf(BrokenCircuitError);
    expect(error).toBeInstanceOf(HoldfastError);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(TimeoutError);
    expect(new Error('plain')).not.toBeInstanceOf(HoldfastError);
    expect(null).not.toBeInstanceOf(HoldfastError);
  });

  it('instanceof holds for an error made by another installed copy (same Symbol.for brands)', () => {
    // What a second copy of @holdfast/core would make: another class, the same brands.
    class OtherCopyBase extends Error {
      constructor(message: string) {
        super(message);
        Object.defineProperty(this, Symbol.for('holdfast.error.brands'), {
          value: [Symbol.for('holdfast.error.TimeoutError'), Symbol.for('holdfast.error.HoldfastError')],
        });
      }
    }
    const foreign = new OtherCopyBase('timed out');
    expect(foreign).toBeInstanceOf(TimeoutError);
    expect(foreign).toBeInstanceOf(HoldfastError);
    expect(foreign).not.toBeInstanceOf(BrokenCircuitError);
  });

  it('BrokenCircuitError says when the breaker will next try', () => {
    const error = new BrokenCircuitError('payments', Date.UTC(2026, 0, 1));
    expect(error.message).toBe('payments: circuit is open until 2026-01-01T00:00:00.000Z');
    expect(new BrokenCircuitError('payments', undefined).message).toBe(
      'payments: circuit is open until closed by hand',
    );
  });

  it('hasCode() checks the code of a holdfast error only', () => {
    expect(hasCode(new TimeoutError('t', 1), 'E_TIMEOUT')).toBe(true);
    expect(hasCode(new TimeoutError('t', 1), 'E_CIRCUIT_OPEN')).toBe(false);
    expect(hasCode(Object.assign(new Error('x'), { code: 'E_TIMEOUT' }), 'E_TIMEOUT')).toBe(false);
  });

  it('HoldfastConfigError names every bad option with its value', () => {
    const error = new HoldfastConfigError('retry', [
      { path: 'backoff.maxDelay', message: 'must be >= backoff.initialDelay', value: 10 },
      { path: 'maxAttempts', message: 'must be an integer', value: 2.5 },
    ]);
    expect(error.code).toBe('E_CONFIG');
    expect(error.message).toBe(
      'retry: backoff.maxDelay must be >= backoff.initialDelay (got 10); maxAttempts must be an integer (got 2.5)',
    );
  });
});

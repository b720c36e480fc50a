import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createBus, HoldfastConfigError, healthReport, parseOptions, timeout } from '../src/index.js';

const hostile = fc.anything({
  withNullPrototype: true,
  withBigInt: true,
  withMap: true,
  withSet: true,
  withBoxedValues: true,
  withTypedArray: true,
  withSparseArray: true,
});

describe('options: bad values are described, never thrown over', () => {
  it('parseOptions with any value: builds or throws HoldfastConfigError naming the owner (describing the value never throws)', () => {
    const schema = z.strictObject({ n: z.number(), s: z.string().optional() });
    fc.assert(
      fc.property(fc.oneof(hostile, fc.record({ n: hostile, s: hostile }, { requiredKeys: [] })), (input) => {
        try {
          parseOptions('owner', schema, input);
        } catch (error) {
          expect(error).toBeInstanceOf(HoldfastConfigError);
          expect((error as HoldfastConfigError).message).toMatch(/^owner: /);
          // The value is shown, cut to a line.
          for (const line of (error as HoldfastConfigError).message.split('; ')) expect(line.length).toBeLessThan(400);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('regression: a null-prototype object holding a BigInt is described, not a TypeError', () => {
    // JSON.stringify throws on the BigInt and String() on the missing toString: the error's
    // message was built with both, so the caller got "Cannot convert object to primitive value".
    const value = Object.assign(Object.create(null) as object, { big: 1n });
    const error = (() => {
      try {
        timeout(100, { name: value as never });
      } catch (e) {
        return e;
      }
    })();
    expect(error).toBeInstanceOf(HoldfastConfigError);
    expect((error as HoldfastConfigError).message).toMatch(/^timeout: name .* \(got \[object Object\]\)$/);
    expect((error as HoldfastConfigError).issues[0]?.path).toBe('name');
  });
});

describe('createBus() and healthReport() check their options', () => {
  it('createBus: null, a typo and a non-function onListenerError are HoldfastConfigError naming the option', () => {
    expect(() => createBus(null as never)).toThrow(HoldfastConfigError);
    expect(() => createBus({ onListenerErorr: () => {} } as never)).toThrow(
      /^createBus: onListenerErorr is not a known option/,
    );
    expect(() => createBus({ onListenerError: 'log' } as never)).toThrow(
      /^createBus: onListenerError must be a function/,
    );
    const errors: unknown[] = [];
    const bus = createBus({ onListenerError: (e) => errors.push(e) });
    bus.on('retry.attempt', () => {
      throw new Error('boom');
    });
    bus.emit({ type: 'retry.attempt', source: 'r', time: 0 } as never);
    expect(errors).toHaveLength(1);
    expect(createBus()).toBeDefined();
    expect(createBus(undefined)).toBeDefined();
  });

  it('healthReport: a typo or a registry that is not one is HoldfastConfigError, not a TypeError or a silent default', () => {
    expect(() => healthReport(null as never)).toThrow(HoldfastConfigError);
    expect(() => healthReport({ critcal: () => false } as never)).toThrow(
      /^healthReport: critcal is not a known option/,
    );
    expect(() => healthReport({ policies: {} as never })).toThrow(/^healthReport: policies must be a PolicyRegistry/);
    expect(() => healthReport({ clock: Date as never })).toThrow(/^healthReport: clock must be a Clock/);
    expect(healthReport({ critical: () => true }).status).toBeDefined();
  });
});

import { inspect } from 'node:util';
import { BrokenCircuitError, CallScope, hasCode, isLocalRefusal } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { circuitBreaker } from '../src/index.js';
import { failTimes, setup, succeed } from './support.js';

/** Counts the `instanceof CallScope` checks made while it is installed. */
function countScopeChecks(): { readonly count: number; restore(): void } {
  const original = Object.getOwnPropertyDescriptor(CallScope, Symbol.hasInstance) as PropertyDescriptor;
  const counter = { count: 0, restore: () => Object.defineProperty(CallScope, Symbol.hasInstance, original) };
  Object.defineProperty(CallScope, Symbol.hasInstance, {
    ...original,
    value(value: unknown) {
      counter.count++;
      return (original.value as (v: unknown) => boolean).call(CallScope, value);
    },
  });
  return counter;
}

describe('a call without options', () => {
  let checks: ReturnType<typeof countScopeChecks> | undefined;
  afterEach(() => checks?.restore());

  it('is refused without an instanceof CallScope check (a V8 cache miss on every refusal)', async () => {
    const { breaker } = setup({ consecutiveFailures: 1 });
    await failTimes(breaker, 1);
    expect(breaker.state).toBe('open');
    checks = countScopeChecks();
    for (let i = 0; i < 10; i++) await breaker.execute(succeed).catch(() => undefined);
    expect(checks.count).toBe(0);
  });

  it('with null, or a scope, behaves as before: null runs it, an aborted scope refuses it', async () => {
    const { breaker } = setup();
    await expect(breaker.execute(succeed, null as never)).resolves.toBe('ok');
    const controller = new AbortController();
    const scope = new CallScope({ signal: controller.signal });
    controller.abort(new Error('gone'));
    await expect(breaker.execute(succeed, scope)).rejects.toThrow('gone');
    scope.release();
  });
});

describe('the error of a refused call', () => {
  async function refused(name = 'payments') {
    const breaker = circuitBreaker({ name, openFor: 60_000, policies: false });
    breaker.open();
    return (await breaker.execute(succeed).catch((e: unknown) => e)) as BrokenCircuitError;
  }

  it('is a BrokenCircuitError, a local refusal, an Error, with its code, message, stack and retryAt', async () => {
    const e = await refused();
    expect(e).toBeInstanceOf(BrokenCircuitError);
    expect(e).toBeInstanceOf(Error);
    expect(isLocalRefusal(e)).toBe(true);
    expect(hasCode(e, 'E_CIRCUIT_OPEN')).toBe(true);
    expect(typeof e.retryAt).toBe('number');
    expect(e.message).toBe(`payments: circuit is open until ${new Date(e.retryAt as number).toISOString()}`);
    expect(e.stack).toBe(`BrokenCircuitError: ${e.message}`);
    expect(String(e)).toBe(`BrokenCircuitError: ${e.message}`);
    expect(Object.keys(e)).toEqual(['name', 'code', 'retryAt']);
    expect(inspect(e)).toContain(e.message);
  });

  it('keeps a message or stack a caller sets, on that error only', async () => {
    const a = await refused();
    const b = await refused();
    a.message = 'wrapped: payments down';
    a.stack = 'custom stack';
    expect(a.message).toBe('wrapped: payments down');
    expect(a.stack).toBe('custom stack');
    expect(b.message).toMatch(/^payments: circuit is open until /);
    expect(b.stack).toBe(`BrokenCircuitError: ${b.message}`);
    expect(Object.keys(a)).toEqual(['name', 'code', 'retryAt']);
  });

  it('names its own breaker, and an object made from it reads without throwing', async () => {
    const a = await refused('inventory');
    const b = await refused('pricing');
    expect(a.message).toMatch(/^inventory: /);
    expect(b.message).toMatch(/^pricing: /);
    const derived = Object.create(a) as BrokenCircuitError;
    expect(derived).toBeInstanceOf(BrokenCircuitError);
    expect(() => derived.message).not.toThrow();
  });
});

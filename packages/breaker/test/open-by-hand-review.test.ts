/**
 * Hostile review of open() by hand after an open time ran out unobserved (dbfabdd): it opens
 * again, and tells no one of a half-open state no call ever saw.
 */
import { createBus, type HoldfastEvent, ManualClock } from '@holdfast/core';
import { expect, it } from 'vitest';
import { circuitBreaker } from '../src/index.js';

it('open() after an unobserved expiry opens it again without a breaker.halfOpen: no probe was let through', async () => {
  const clock = new ManualClock(1_000_000);
  const bus = createBus({ onListenerError: () => {} });
  const types: string[] = [];
  bus.on('*', (e: HoldfastEvent) => {
    if (e.type.startsWith('breaker.')) types.push(e.type);
  });
  const breaker = circuitBreaker({ name: 'by-hand', clock, bus, policies: false, openFor: 1_000 });
  breaker.open();
  await clock.advance(1_000);
  breaker.open();
  await new Promise((resolve) => setImmediate(resolve));
  expect(breaker.state).toBe('open');
  expect(types).toEqual(['breaker.open', 'breaker.open']);
});

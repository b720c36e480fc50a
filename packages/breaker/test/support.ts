import { createBus, type EventOf, type EventType, type HoldfastEvent, ManualClock } from '@holdfast/core';
import { type CircuitBreakerOptions, circuitBreaker } from '../src/index.js';

/** A breaker on a manual clock and a bus of its own, with every event it emits. */
export function setup(options: CircuitBreakerOptions = {}) {
  const clock = new ManualClock(0);
  const bus = createBus();
  const events: HoldfastEvent[] = [];
  bus.on('*', (e) => events.push(e));
  const breaker = circuitBreaker({ name: 'payments', clock, bus, ...options });
  const of = <K extends EventType>(type: K) => events.filter((e) => e.type === type) as EventOf<K>[];
  const types = () => events.map((e) => e.type);
  return { clock, bus, events, breaker, of, types };
}

/** An error as a network client throws it. */
export function failure(code = 'ECONNRESET'): Error {
  return Object.assign(new Error(`downstream failed: ${code}`), { code });
}

export const succeed = () => 'ok';
export const fail =
  (code = 'ECONNRESET') =>
  () => {
    throw failure(code);
  };

/** A call that settles when the manual clock reaches `ms` from now. */
export function after<T>(clock: ManualClock, ms: number, value: T, reject = false): () => Promise<T> {
  return () =>
    new Promise<T>((resolve, rejectWith) => {
      clock.setTimeout(() => (reject ? rejectWith(value) : resolve(value)), ms);
    });
}

/** Runs `n` failing calls and swallows their errors. */
export async function failTimes(breaker: { execute: (fn: () => unknown) => Promise<unknown> }, n: number) {
  for (let i = 0; i < n; i++) await breaker.execute(fail()).catch(() => undefined);
}

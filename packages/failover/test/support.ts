import { createBus, type EventOf, type EventType, ManualClock } from '@holdfast/core';

import { seeded } from '../../../test/support/seeded.js';

export { seeded };

/** A manual clock, a private bus, and every event it carries. */
export function harness(start = 1_000_000) {
  const clock = new ManualClock(start);
  const bus = createBus();
  const events: EventOf<EventType>[] = [];
  bus.on('*', (e) => events.push(e as EventOf<EventType>));
  const of = <K extends EventType>(type: K) => events.filter((e) => e.type === type) as unknown as EventOf<K>[];
  return { clock, bus, events, of, random: seeded() };
}

/** Counts how many calls each endpoint took. */
export function tally(names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const n of names) out[n] = (out[n] ?? 0) + 1;
  return out;
}

/** A failure that proves the call never reached its endpoint, as fetch reports it. */
export function refused(): Error {
  return new TypeError('fetch failed', {
    cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
  });
}

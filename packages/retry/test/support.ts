import { createBus, type EventOf, type EventType, ManualClock } from '@holdfast/core';

export { seeded } from '../../../test/support/seeded.js';

/** A manual clock at a realistic epoch (HTTP-dates need one), a bus, and the events it saw. */
export function setup(start = Date.UTC(2026, 0, 1)) {
  const clock = new ManualClock(start);
  const bus = createBus();
  const events: { type: EventType; [key: string]: unknown }[] = [];
  bus.on('*', (e) => events.push(e));
  const of = <K extends EventType>(type: K) => events.filter((e) => e.type === type) as unknown as EventOf<K>[];
  return { clock, bus, events, of };
}

/** A fetch Response with the given status and headers. */
export function response(status: number, headers: Record<string, string> = {}): Response {
  return new Response(status === 204 ? null : `status ${status}`, { status, headers });
}

/** An error an HTTP client would throw: `status` and a `response` with headers. */
export function httpError(status: number, headers: Record<string, string> = {}): Error {
  return Object.assign(new Error(`HTTP ${status}`), { status, response: { status, headers: new Headers(headers) } });
}

/** Lets pending work register its timers, then fires every timer until none is left. */
export async function finish(clock: ManualClock): Promise<void> {
  await clock.advance(0);
  await clock.runAll();
}

/**
 * A steady outage on a ManualClock: a call every `1000 / rate` ms from `from` to `to`, each
 * deposited and then asking `budget` for one retry (`to` included). Returns the retries let through.
 */
export async function steadyOutage(
  budget: { deposit(): void; tryWithdraw(): boolean },
  clock: ManualClock,
  rate: number,
  from: number,
  to: number,
): Promise<number> {
  let granted = 0;
  for (let t = from; t <= to; t += 1_000 / rate) {
    await clock.advance(Math.round(t) - clock.now());
    budget.deposit();
    if (budget.tryWithdraw()) granted++;
  }
  return granted;
}

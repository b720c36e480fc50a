import {
  type Bus,
  type Clock,
  elapsedTime,
  bus as globalBus,
  policies as globalPolicies,
  type PolicyRegistry,
  realClock,
  shieldBus,
} from '@holdfast/core';

/** What every policy of this package keeps from its common options. */
export interface Common {
  readonly name: string;
  readonly bus: Bus;
  readonly clock: Clock;
  /** The clock's monotonic time: windows, refills and latencies, which a wall-clock step must not move. */
  readonly elapsed: () => number;
}

/** Resolves the common options' defaults. */
export function commonOf(o: { name: string; bus?: Bus | undefined; clock?: Clock | undefined }): Common {
  const clock = o.clock ?? realClock;
  // A bus of the user's own may throw: a refusal must still be a refusal, a fail-open call still run.
  const bus = o.bus === undefined ? globalBus : shieldBus(o.bus, o.name);
  return { name: o.name, bus, clock, elapsed: elapsedTime(clock) };
}

/** Lists `policy` on its registry (unless `false`); returns the function that takes it off. */
export function list(
  kind: string,
  name: string,
  policy: { snapshot(): unknown },
  registry: PolicyRegistry | false | undefined,
): () => void {
  const to = registry ?? globalPolicies;
  return to === false ? () => {} : to.register(kind, name, policy as never);
}

/**
 * The least whole ms (at least 1) at which `admits` holds, from an estimate `ms` that floating
 * point and the estimate's epsilon (take() admits with a margin of its own) may put a few ms off
 * either way: short at extreme rates, long at slow ones (1 a day read a ms long).
 */
export function leastWait(ms: number, admits: (ms: number) => boolean): number {
  ms = Math.max(1, ms);
  for (let i = 0; i < 4 && ms > 1 && admits(ms - 1); i++) ms--;
  for (let i = 0; i < 4 && !admits(ms); i++) ms++;
  return ms;
}

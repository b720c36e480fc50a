import { circuitBreaker } from '@holdfast/breaker';
import { type Clock, createBus } from '@holdfast/core';

/**
 * The seam between failover and whatever counts an endpoint's consecutive failures. Failover
 * decides what a trip means (eject, for how long, whether the share allows it); the counter
 * only says when N failures in a row have happened.
 */
export interface FailureCounter {
  success(): void;
  /** Returns true when this failure completes a run of `threshold` in a row. */
  failure(): boolean;
  /** Forgets the current run, e.g. after an ejection or when one was refused. */
  reset(): void;
}

/** Replayed into the breaker: a settled try, told as a synchronous throw so it is counted at once. */
const succeeded = Symbol('succeeded');
const failed = Symbol('failed');
const quiet = createBus();
const noop = () => {};

/**
 * A failure counter backed by a per-endpoint @holdfast/breaker in its consecutive-failures
 * mode. The breaker only counts: when it opens, failover takes the decision (eject or not)
 * and closes it again, which starts the count over. Its events go to a bus of its own: the
 * set reports `failover.eject` instead.
 */
export function breakerCounter(threshold: number, name: string, clock: Clock): FailureCounter {
  const breaker = circuitBreaker({
    name,
    consecutiveFailures: threshold,
    isFailure: (settled) => (!settled.ok && settled.error === failed ? 'failure' : 'success'),
    bus: quiet,
    clock,
    policies: false, // an internal counter, not a breaker anyone should see
  });
  // The breaker's call path catches a synchronous throw at once: the count is current on return.
  const replay = (mark: symbol) => {
    breaker
      .execute(() => {
        throw mark;
      })
      .catch(noop);
  };
  // Failures since the last success. It lets a success skip the breaker when there is no run
  // to end, which keeps the breaker off the hot path of a healthy endpoint.
  let run = 0;
  return {
    success() {
      if (run === 0) return;
      run = 0;
      replay(succeeded);
    },
    failure() {
      run++;
      replay(failed);
      return breaker.state === 'open';
    },
    reset() {
      run = 0;
      breaker.close();
    },
  };
}

/**
 * How long the n-th ejection in a row lasts: `baseTime`, doubling each time, at most `maxTime`.
 */
export function ejectionTime(ejections: number, baseTime: number, maxTime: number): number {
  return Math.min(maxTime, baseTime * 2 ** Math.max(0, Math.min(30, ejections - 1)));
}

/**
 * Ejections are forgiven one per `baseTime` spent back in service, so an endpoint that failed
 * once a week ago starts again from the base time.
 */
export function remainingEjections(ejections: number, restoredAt: number | undefined, now: number, baseTime: number) {
  if (restoredAt === undefined) return ejections;
  // A clock without monotonic() stepped back (NTP) forgives nothing, and adds nothing either.
  return Math.max(0, ejections - Math.floor(Math.max(0, now - restoredAt) / baseTime));
}

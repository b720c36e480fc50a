import type { ManualClock, Policy } from '@holdfast/core';
import { isRejection } from '../src/index.js';

/**
 * An upstream with a concurrency knee, on a simulated clock: up to `knee` concurrent calls take
 * `base` ms; past it, latency grows with the square of the overload (contention, thrashing), so
 * throughput falls as concurrency rises, as a real overloaded server's does.
 */
export function kneeUpstream(clock: ManualClock, knee: number, base: number) {
  let running = 0;
  return () =>
    new Promise<void>((resolve) => {
      running++;
      const latency = base * Math.max(1, (running / knee) ** 2);
      clock.setTimeout(() => {
        running--;
        resolve();
      }, latency);
    });
}

/**
 * Offers `perMs` calls every simulated ms for `ms` ms through `policy` (more than the upstream
 * can take); counts the calls that succeed after `measureFrom`, per second, and those refused.
 */
export async function openLoop(
  clock: ManualClock,
  policy: Policy,
  upstream: () => Promise<void>,
  options: { perMs: number; ms: number; measureFrom: number },
): Promise<{ goodput: number; refused: number; sent: number }> {
  const start = clock.now();
  let good = 0;
  let refused = 0;
  let sent = 0;
  const calls: Promise<void>[] = [];
  const send = () => {
    sent++;
    const at = clock.now() - start;
    calls.push(
      policy.execute(upstream).then(
        () => {
          if (at >= options.measureFrom) good++;
        },
        (error: unknown) => {
          if (!isRejection(error)) throw error;
          refused++;
        },
      ),
    );
  };
  for (let t = 0; t < options.ms; t++) {
    for (let i = 0; i < options.perMs; i++) send();
    await clock.advance(1);
  }
  await clock.runAll();
  await Promise.all(calls);
  return { goodput: good / ((options.ms - options.measureFrom) / 1000), refused, sent };
}

import { circuitBreaker } from '@holdfast/breaker';
import { createBus, pipeline, timeout } from '@holdfast/core';
import { retry } from '@holdfast/retry';
import {
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  retry as cockatielRetry,
  timeout as cockatielTimeout,
  ExponentialBackoff,
  handleAll,
  TimeoutStrategy,
  wrap,
} from 'cockatiel';
import { compare, format, type Row } from './harness.js';

const op = async () => 1;

/** timeout + retry + breaker around `async () => 1`, beside cockatiel's wrap() of the same three. */
export async function benchPipeline(): Promise<Row[]> {
  const bus = createBus();
  const ours = pipeline(timeout(10_000, { bus }), retry({ bus, maxAttempts: 3 }), circuitBreaker({ bus }));
  const theirs = wrap(
    cockatielTimeout(10_000, TimeoutStrategy.Cooperative),
    cockatielRetry(handleAll, { maxAttempts: 3, backoff: new ExponentialBackoff() }),
    cockatielBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) }),
  );
  const oneBreaker = cockatielBreaker(handleAll, { halfOpenAfter: 10_000, breaker: new ConsecutiveBreaker(5) });
  const rows = await compare({
    title: 'pipeline: timeout + retry + breaker around async () => 1, per successful call',
    baseline: 'bare call',
    variants: [
      { name: 'bare call', call: op },
      { name: 'holdfast pipeline(timeout, retry, breaker)', call: () => ours.execute(op) },
      { name: 'cockatiel wrap(timeout, retry, breaker)', call: () => theirs.execute(op) },
      { name: 'cockatiel breaker alone', call: () => oneBreaker.execute(op) },
    ],
    rounds: 7,
    calls: 1_000,
    pairs: [
      ['holdfast pipeline(timeout, retry, breaker)', 'cockatiel wrap(timeout, retry, breaker)'],
      ['holdfast pipeline(timeout, retry, breaker)', 'cockatiel breaker alone'],
    ],
  });
  const ns = (name: string) => rows.find((r) => r.name.startsWith(name))?.nsPerCall ?? Number.NaN;
  const pipe = ns('holdfast pipeline');
  const breaker = ns('cockatiel breaker alone');
  console.log(
    `goal: pipeline ≤ 1 µs and ≤ 8 × one cockatiel breaker call: ${format(pipe)}, ${(pipe / breaker).toFixed(2)}× (medians)`,
  );
  return rows;
}

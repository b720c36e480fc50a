import { circuitBreaker } from '@holdfast/breaker';
import { createBus, pipeline, timeout } from '@holdfast/core';
import { retry } from '@holdfast/retry';
import {
  ConsecutiveBreaker,
  circuitBreaker as cockatielBreaker,
  ExponentialBackoff,
  handleAll,
  retry as cockatielRetry,
  TimeoutStrategy,
  timeout as cockatielTimeout,
  wrap,
} from 'cockatiel';
import { compare, printRows, type Row } from './harness.js';

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
  });
  const ns = (name: string) => rows.find((r) => r.name.startsWith(name))?.nsPerCall ?? Number.NaN;
  const pipe = ns('holdfast pipeline');
  const breaker = ns('cockatiel breaker alone');
  const wrapped = ns('cockatiel wrap');
  printRows(
    'pipeline: against the peer',
    ['measure', 'holdfast', 'peer', 'ratio', 'goal'],
    [
      ['pipeline vs cockatiel wrap', fmt(pipe), fmt(wrapped), `${(pipe / wrapped).toFixed(2)}×`, '< 1×'],
      [
        'pipeline vs one cockatiel breaker call',
        fmt(pipe),
        fmt(breaker),
        `${(pipe / breaker).toFixed(2)}×`,
        '≤ 8× (and ≤ 1 µs)',
      ],
    ],
  );
  return rows;
}

function fmt(ns: number): string {
  return ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`;
}

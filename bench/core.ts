import { createBus, type HoldfastEvent, timeout } from '@holdfast/core';
import { timeout as cockatielTimeout, TimeoutStrategy } from 'cockatiel';
import { compare } from './harness.js';

/** The cost of an emit to no listener, 1 and 10, and of timeout() beside cockatiel's. */
export async function benchCore(): Promise<void> {
  const event = (): HoldfastEvent => ({
    type: 'retry.attempt',
    source: 'bench',
    time: 0,
    attempt: 2,
    delay: 10,
    code: undefined,
  });
  const op = async () => 1;
  const emitter = (listeners: number) => {
    const bus = createBus();
    for (let i = 0; i < listeners; i++) bus.on('retry.attempt', () => {});
    // What every policy does: check wants() before building the event.
    return () => {
      if (bus.wants('retry.attempt')) bus.emit(event());
      return op();
    };
  };
  await compare({
    title: 'core: emit, per call (an async call that emits one event)',
    baseline: 'bare call',
    variants: [
      { name: 'bare call', call: op },
      { name: 'emit, no listener', call: emitter(0) },
      { name: 'emit, 1 listener', call: emitter(1) },
      { name: 'emit, 10 listeners', call: emitter(10) },
    ],
  });

  const bus = createBus();
  const ours = timeout(10_000, { bus });
  const oursAggressive = timeout(10_000, { bus, strategy: 'aggressive' });
  const theirs = cockatielTimeout(10_000, TimeoutStrategy.Cooperative);
  await compare({
    title: 'core: timeout(), per successful call',
    baseline: 'bare call',
    variants: [
      { name: 'bare call', call: op },
      { name: 'holdfast timeout (cooperative)', call: () => ours.execute(op) },
      {
        name: 'holdfast timeout, fn reads signal',
        call: () => ours.execute(({ signal }) => (signal.aborted ? 0 : op())),
      },
      { name: 'holdfast timeout (aggressive)', call: () => oursAggressive.execute(op) },
      { name: 'cockatiel timeout (cooperative)', call: () => theirs.execute(op) },
    ],
    calls: 500,
    pairs: [['holdfast timeout (cooperative)', 'cockatiel timeout (cooperative)']],
  });
}

import { createBus, ManualClock } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { chaosSwitch, injectLatency } from '../src/index.js';

afterEach(() => chaosSwitch.on());

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

// What runs as a latency is injected (its `latency` function, a `chaos.inject` listener: a drill's
// guard, a test harness) may abort the caller or turn chaos off before the wait starts. The wait
// then hooked an abort already made: the call rejected with "ReferenceError: Cannot access 'stop'
// before initialization" instead of the caller's reason; and a switch turned off then still held
// the call for the whole latency.
describe('injectLatency() when the caller aborts or chaos goes off as the latency is injected (review)', () => {
  it('a chaos.inject listener aborts the caller: the call rejects with its reason, never runs', async () => {
    const bus = createBus();
    const controller = new AbortController();
    bus.on('chaos.inject', () => controller.abort(new Error('client left')));
    const policy = injectLatency({ bus, enabled: true, latency: 60_000, clock: new ManualClock() });
    let runs = 0;
    await expect(policy.execute(() => ++runs, { signal: controller.signal })).rejects.toThrow('client left');
    expect(runs).toBe(0);
  });

  it('the latency function aborts the caller: the call rejects with its reason, never runs', async () => {
    const controller = new AbortController();
    const latency = () => {
      controller.abort(new Error('client left'));
      return 60_000;
    };
    const policy = injectLatency({ bus: createBus(), enabled: true, latency, clock: new ManualClock() });
    let runs = 0;
    await expect(policy.execute(() => ++runs, { signal: controller.signal })).rejects.toThrow('client left');
    expect(runs).toBe(0);
  });

  it('a chaos.inject listener turns chaos off: the call runs at once, no wait', async () => {
    const bus = createBus();
    bus.on('chaos.inject', () => chaosSwitch.off());
    const policy = injectLatency({ bus, enabled: true, latency: 60_000, clock: new ManualClock() });
    let runs = 0;
    const call = policy.execute(() => ++runs);
    await turns(5); // the manual clock never moves: only the switch can end the wait
    expect(runs).toBe(1);
    await expect(call).resolves.toBe(1);
  });
});

import { createBus } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { chaosSwitch, injectBehavior, injectLatency, injectOutcome } from '../src/index.js';

afterEach(() => chaosSwitch.on());

// A caller that aborts while an injection holds its call (a behavior awaited, a latency ended by
// the kill switch in the same turn) has left: its function must never run, as with an abort before
// the call (docs/concepts.md, "Aborts: the rules"). It ran, then the call rejected: the effect
// (a POST, a charge) done for nobody.
describe('an injection whose caller aborts before it hands the call on', () => {
  it('injectBehavior: an abort during the behavior, the call never runs', async () => {
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const policy = injectBehavior({ bus: createBus(), enabled: true, behavior: () => held });
    const controller = new AbortController();
    let runs = 0;
    const call = policy.execute(() => ++runs, { signal: controller.signal });
    controller.abort(new Error('client left'));
    release();
    await expect(call).rejects.toThrow('client left');
    expect(runs).toBe(0);
  });

  it('injectLatency: the kill switch ends the wait and the caller aborts in the same turn, the call never runs', async () => {
    const policy = injectLatency({ bus: createBus(), enabled: true, latency: 60_000 });
    const controller = new AbortController();
    let runs = 0;
    const call = policy.execute(() => ++runs, { signal: controller.signal });
    // A shutdown: chaos off, then every call in flight aborted.
    chaosSwitch.off();
    controller.abort(new Error('shutting down'));
    await expect(call).rejects.toThrow('shutting down');
    expect(runs).toBe(0);
  });

  it('injectOutcome: an abort while the outcome is made, the call rejects with the reason, not the made-up result', async () => {
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const policy = injectOutcome({
      bus: createBus(),
      enabled: true,
      outcome: async () => {
        await held;
        return 'made up';
      },
    });
    const controller = new AbortController();
    const call = policy.execute(() => 'real', { signal: controller.signal });
    controller.abort(new Error('client left'));
    release();
    await expect(call).rejects.toThrow('client left');
  });
});

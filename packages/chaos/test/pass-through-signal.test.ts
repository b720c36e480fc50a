import { createBus } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { chaosSwitch, injectFault, injectLatency } from '../src/index.js';

afterEach(() => chaosSwitch.on());

// An injection that does nothing (off, not picked, or the kill switch down) must still keep the
// abort rules every policy keeps: a call whose signal is already aborted, or is no signal, never
// runs. It ran the function, then rejected: the effect done for a caller that had left.
const policies = () =>
  [
    ['disabled', injectFault({ bus: createBus(), enabled: false })],
    ['rate 0', injectLatency({ bus: createBus(), latency: 10, rate: 0, enabled: true })],
  ] as const;

describe('an injection that passes a call through', () => {
  it('never runs a call whose signal is already aborted', async () => {
    for (const [name, policy] of policies()) {
      let runs = 0;
      const gone = AbortSignal.abort(new Error('client left'));
      await expect(
        policy.execute(() => runs++, { signal: gone }),
        name,
      ).rejects.toThrow('client left');
      expect(runs, name).toBe(0);
    }
  });

  it('never runs a call whose signal is no AbortSignal', async () => {
    for (const [name, policy] of policies()) {
      let runs = 0;
      await expect(
        policy.execute(() => runs++, { signal: 'abort' as never }),
        name,
      ).rejects.toThrow(/signal must be an AbortSignal/);
      expect(runs, name).toBe(0);
    }
  });

  it('with the kill switch down too', async () => {
    chaosSwitch.off();
    const policy = injectFault({ bus: createBus(), enabled: true, rate: 1 });
    let runs = 0;
    await expect(policy.execute(() => runs++, { signal: AbortSignal.abort() })).rejects.toThrow();
    expect(runs).toBe(0);
  });

  it('a live signal: runs, once', async () => {
    for (const [name, policy] of policies()) {
      let runs = 0;
      await expect(
        policy.execute(async () => ++runs, { signal: new AbortController().signal }),
        name,
      ).resolves.toBe(1);
    }
  });
});

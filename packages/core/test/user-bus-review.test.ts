import { describe, expect, it } from 'vitest';
import { brokenBus } from '../../../test/support/buses.js';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { fallback, hedge, ManualClock } from '../src/index.js';

const warnings = recordWarnings();

describe('a { bus } of the user own that throws (review)', () => {
  it('fallback(): the call still falls back, and the throw is told once per bus', async () => {
    const bus = brokenBus();
    const policy = fallback({ value: 'cached', bus });
    for (let i = 0; i < 2; i++)
      await expect(policy.execute(() => Promise.reject(new Error('down')))).resolves.toBe('cached');
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
  });

  it('hedge(): the hedge still goes out from its timer, and the first answer wins', async () => {
    const clock = new ManualClock();
    const policy = hedge({ delay: 50, safe: true, budget: false, bus: brokenBus(), clock, policies: false });
    let n = 0;
    const call = policy.execute(({ signal }) => {
      const mine = ++n;
      if (mine === 1)
        return new Promise<string>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
      return `attempt ${mine}`;
    });
    await clock.advance(50);
    await expect(call).resolves.toBe('attempt 2');
    await tick();
    expect(warnings.filter((w) => w.code === 'HOLDFAST_BUS_ERROR')).toHaveLength(1);
  });
});

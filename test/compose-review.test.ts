import { getEventListeners } from 'node:events';
import { circuitBreaker } from '@holdfast/breaker';
import { createBus, fallback, hedge, ManualClock, pipeline, timeout } from '@holdfast/core';
import { bulkhead } from '@holdfast/limit';
import { retry } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';

/** An error whose `code` and `name` getters throw: what a Proxy or a hostile library may reject with. */
function hostile(): object {
  return {
    get code(): never {
      throw new Error('getter on code');
    },
    get name(): never {
      throw new Error('getter on name');
    },
  };
}

/** A function that waits for its signal and rejects with its reason. */
const waitForAbort = ({ signal }: { signal: AbortSignal }) =>
  new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason)));

describe('fallback with a listener (review)', () => {
  it('serves its value for an error whose code getter throws, and reports the event without a code', async () => {
    const bus = createBus();
    const codes: unknown[] = [];
    bus.on('fallback', (e) => codes.push(e.code));
    const f = fallback({ value: 'served', bus });
    const out = await f.execute(() => Promise.reject(hostile())).catch((e: Error) => `rejected: ${e.message}`);
    expect(out).toBe('served');
    expect(codes).toEqual([undefined]);
  });
});

describe('a disabled breaker (review)', () => {
  it('keeps the abort rule: a caller that aborted mid-call gets its reason, not the late value', async () => {
    const clock = new ManualClock();
    const b = circuitBreaker({ bus: createBus(), clock, policies: false });
    b.disable();
    const ac = new AbortController();
    const call = b.execute(() => new Promise((r) => clock.setTimeout(() => r('late value'), 10)), {
      signal: ac.signal,
    });
    ac.abort('caller left');
    await clock.advance(10);
    await expect(call).rejects.toBe('caller left');
  });
});

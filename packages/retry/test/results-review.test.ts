import { createBus, type EventOf, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { retry } from '../src/index.js';

/** A strict row (an ORM's): awaitable, but every other unknown property throws. */
const strictRow = () =>
  new Proxy(
    {},
    {
      get(_target, key) {
        if (key === 'then') return undefined;
        throw new Error(`strict row: no column ${String(key)}`);
      },
    },
  );

describe('retried results that are not Responses (review)', () => {
  it('polls through null results: `retryOn.result` saying yes to null retries, and the value comes back', async () => {
    const clock = new ManualClock();
    const r = retry({
      bus: createBus(),
      clock,
      budget: false,
      backoff: { initialDelay: 10 },
      retryOn: { result: (x) => x === null },
    });
    let calls = 0;
    const call = r.execute(() => (++calls < 3 ? null : 'found')).catch((e: Error) => `${e.name}: ${e.message}`);
    await clock.runAll();
    expect(await call).toBe('found');
    expect(calls).toBe(3);
  });

  for (const [label, make] of [
    ['undefined', () => undefined],
    ['null', () => null],
    ['a strict row', strictRow],
  ] as const) {
    it(`a caller that aborts during an attempt that returns ${label} gets its own reason, and giveUp says aborted`, async () => {
      const bus = createBus();
      const giveUps: EventOf<'retry.giveUp'>[] = [];
      bus.on('retry.giveUp', (e) => giveUps.push(e));
      const r = retry({ bus, budget: false });
      const ac = new AbortController();
      const value = make();
      const got = await r
        .execute(
          async () => {
            ac.abort('caller left');
            return value;
          },
          { signal: ac.signal },
        )
        .then(
          () => 'resolved',
          (e: unknown) => (e instanceof Error ? `${e.name}: ${e.message}` : e),
        );
      expect(got).toBe('caller left');
      expect(giveUps.map((e) => e.reason)).toEqual(['aborted']);
    });
  }
});

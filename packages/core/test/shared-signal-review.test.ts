import { getEventListeners } from 'node:events';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CallScope } from '../src/index.js';

describe('CallScope on a caller signal many calls share (review)', () => {
  it('property: one abort listener while any scope holds the signal, none after; an abort reaches exactly the scopes held', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant('open' as const), fc.nat(50)), { maxLength: 120 }),
        fc.boolean(),
        (steps, abortAtEnd) => {
          const controller = new AbortController();
          const held: CallScope[] = [];
          const released: CallScope[] = [];
          for (const step of steps) {
            if (step === 'open') held.push(new CallScope({ signal: controller.signal }));
            else if (held.length > 0) {
              const [scope] = held.splice(step % held.length, 1) as [CallScope];
              scope.release();
              released.push(scope);
            }
            expect(getEventListeners(controller.signal, 'abort')).toHaveLength(held.length > 0 ? 1 : 0);
          }
          if (!abortAtEnd) return;
          controller.abort('bye');
          expect(held.every((s) => s.aborted && s.reason === 'bye')).toBe(true);
          expect(released.some((s) => s.aborted)).toBe(false);
          expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
          // A scope made after the abort is aborted at once, and adds nothing.
          expect(new CallScope({ signal: controller.signal }).aborted).toBe(true);
        },
      ),
      { numRuns: 300 },
    );
  });
});

/**
 * Process warnings reach the logs: a credential in what warnOnce is told (a policy or endpoint
 * named by its URL, a value a user's flag answered, the message of what a user's callback threw)
 * never reaches the warning text; what is no credential still reads as it was.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { carrierArb, secretArb } from '../../../test/support/secret-events.js';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { createBus, type HoldfastEvent, warnOnce } from '../src/index.js';

const warnings = recordWarnings();

describe('warnOnce hides credentials', () => {
  it('property: a secret in the text or in the error tells none of it', async () => {
    const arb = secretArb.chain((secret) =>
      fc.record({ secret: fc.constant(secret), name: carrierArb(secret), message: carrierArb(secret) }),
    );
    await fc.assert(
      fc.asyncProperty(arb, async ({ secret, name, message }) => {
        warnings.length = 0;
        warnOnce(new Set(), 'k', 'HOLDFAST_TEST', `${name}: isFailure threw`, new Error(`cannot reach ${message}`));
        warnOnce(new Set(), 'k', 'HOLDFAST_TEST', `${name}: its flag answered "${message}"`, 'read as off');
        await tick();
        expect(warnings).toHaveLength(2);
        expect(warnings.filter((w) => w.message.includes(secret))).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });

  it('a bus listener that throws with a DSN in its message is told without its password', async () => {
    const bus = createBus();
    bus.on('breaker.open', () => {
      throw new Error('cannot reach postgres://app:hunter2@db.internal/orders');
    });
    bus.emit({ type: 'breaker.open', source: 'db', time: 0 } as unknown as HoldfastEvent);
    await tick();
    expect(warnings).toEqual([
      {
        code: 'HOLDFAST_LISTENER_ERROR',
        message:
          'a listener for "breaker.open" threw (reported once per listener): cannot reach postgres://***@db.internal/orders',
      },
    ]);
  });
});

/**
 * Hostile review of drill(), second round: a long drill against a service that stays down
 * (hundreds of thousands of failed requests), and what it does with its own options' callbacks.
 */
import { describe, expect, it } from 'vitest';
import { drill } from '../src/index.js';

describe('drill, review', () => {
  it('200,000 failed requests (a long drill whose service stays down): a result, not a RangeError', async () => {
    const N = 200_000;
    const result = await drill({
      print: false,
      load: {
        duration: 60_000, // the driver resolves once it has sent them all: the load ends there
        drive: async (send) => {
          // Quick refusals, as from a dead port: 500 rps for 400 s is 200,000 of them.
          for (let i = 0; i < N; i += 10_000) {
            const batch: Promise<unknown>[] = [];
            for (let j = 0; j < 10_000; j++)
              batch.push(send(() => Promise.reject(new Error('ECONNREFUSED'))).catch(() => {}));
            await Promise.all(batch);
          }
        },
      },
      objectives: { maxRecovery: 1_000 },
    });
    // Before the fix: RangeError: Maximum call stack size exceeded (Math.min(...200,000 starts)).
    expect(result.load.failed).toBe(N);
    expect(result.recovery.recovered).toBe(false);
    expect(result.recovery.firstFailure).not.toBeNull();
    expect(result.passed).toBe(false);
  }, 60_000);
});

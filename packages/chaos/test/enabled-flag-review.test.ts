/**
 * Review: an `enabled` flag that answers something other than true or false. Feature-flag clients
 * answer asynchronously (`await flags.isEnabled('chaos')`), and a flag read from the environment
 * is a string. A promise is truthy, and so is the string "false": read with Boolean(), such a flag
 * switched the chaos ON for every call, whatever the flag said. Off unless enabled on purpose:
 * only `true` turns an injection on; anything else reads as off, told once as a process warning.
 */
import { describe, expect, it } from 'vitest';
import { recordWarnings, tick } from '../../../test/support/warnings.js';
import { faultyFetch, injectFault, injectLatency, injectOutcome } from '../src/index.js';

const warnings = recordWarnings();

const asyncFlagOff = (async () => false) as unknown as () => boolean;
const envFlagOff = (() => 'false') as unknown as () => boolean;

describe('injection review: a flag that answers neither true nor false', () => {
  for (const [what, flag] of [
    ['an async flag answering false', asyncFlagOff],
    ['a flag read from the environment as "false"', envFlagOff],
  ] as const) {
    it(`${what}: no injection, the call runs untouched, told once`, async () => {
      for (const policy of [
        injectFault({ enabled: flag }),
        injectLatency({ enabled: flag, latency: 60_000 }),
        injectOutcome({ enabled: flag, outcome: () => 'made up' }),
      ]) {
        expect(await policy.execute(() => 'real')).toBe('real');
        expect(await policy.execute(() => 'real')).toBe('real');
        expect(policy.injected, `${policy.kind} injected with ${what}`).toBe(0);
      }
      await tick();
      const told = warnings.filter((w) => w.code === 'HOLDFAST_PREDICATE_ERROR');
      expect(told.length, 'one warning per policy').toBe(3);
      expect(told[0]?.message).toMatch(/injectFault: its enabled flag answered .* not true or false/);
    });

    it(`faultyFetch with ${what}: the real fetch answers`, async () => {
      const fetch = faultyFetch({
        enabled: flag,
        faults: [{ type: 'refuse' }],
        fetch: async () => new Response('real'),
      });
      expect(await (await fetch('http://127.0.0.1:1/')).text()).toBe('real');
      expect(fetch.injected).toBe(0);
      await tick();
      expect(warnings.filter((w) => w.code === 'HOLDFAST_PREDICATE_ERROR').map((w) => w.message)).toEqual([
        expect.stringMatching(
          /^faultyFetch: its enabled flag answered (a promise|"false"), not true or false: read as off$/,
        ),
      ]);
    });
  }

  it('true and a function answering true still inject', async () => {
    await expect(injectFault({ enabled: true }).execute(() => 'real')).rejects.toThrow(/injected on purpose/);
    await expect(injectFault({ enabled: () => true }).execute(() => 'real')).rejects.toThrow(/injected on purpose/);
  });
});

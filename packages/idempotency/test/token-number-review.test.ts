/**
 * Hostile review of #19's memoryStore token kept as a number (`m<n>` handed out, read back by
 * its digits): only the very string a claim handed out completes, releases or extends it, as when
 * tokens were compared as strings. Not another spelling of the same number (a leading zero, a
 * sign, an exponent, spaces, a capital M, digits past a safe integer), not an older claim's after
 * a takeover.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { memoryStore } from '../src/index.js';
import { keptBodyOf, type NowToken, tokenText } from '../src/memory-store.js';
import { nowOf } from './memory-store-support.js';

/** Other numbers than a token's own `n`: none a claim handed out. */
function others(n: number): number[] {
  return [n + 1, n - 1, 0, -n, n + 0.5, Number.NaN, Number.POSITIVE_INFINITY, n + 2 ** 53, 2 ** 53];
}

/** Other strings for the same token `m<n>`. */
function spellings(token: string): string[] {
  const digits = token.slice(1);
  const n = Number(digits);
  return [
    `m0${digits}`,
    `m00${digits}`,
    `M${digits}`,
    `m+${digits}`,
    `m${digits} `,
    ` m${digits}`,
    `m${digits}.0`,
    `m${n}e0`,
    `m${digits}\u0000`,
    digits,
    `m${digits}0`,
    `m${n + 2 ** 53}`,
    `m${digits}${'0'.repeat(20)}`,
    `m\u0661`, // an Arabic-Indic one
    `m${String.fromCharCode(0x30 + Number(digits[0]) + 0x10)}`,
    'm',
    '',
  ].filter((t) => t !== token);
}

describe('memoryStore token as a number (hostile review of #19)', () => {
  it('takes only the token it handed out, whatever spelling of its number', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 30 }), fc.string({ maxLength: 20 }), (claimsBefore, other) => {
        const store = memoryStore();
        const now = nowOf(store);
        // Tokens of more digits: claims of other keys first.
        for (let i = 0; i < claimsBefore; i++) now.claim(`other${i}`, 'fp', 60_000);
        const claim = now.claim('k', 'fp', 60_000);
        if (claim.status !== 'claimed') throw new Error(claim.status);
        // The store's calls without a promise hand out its number; its methods, its text.
        const text = tokenText(claim.token);
        const forged: NowToken[] = [...spellings(text), other, ...others(claim.token)].filter(
          (t) => t !== text && t !== claim.token,
        );
        for (const token of forged) {
          expect({ token, extend: now.extend('k', token, 60_000) }).toEqual({ token, extend: false });
          expect({ token, release: now.release('k', token) }).toEqual({ token, release: false });
          expect({ token, complete: now.completeResponse('k', token, 200, {}, 'x', 60_000) }).toEqual({
            token,
            complete: false,
          });
        }
        // Its text, as the store's methods hand it out, is the same token.
        expect(now.extend('k', text, 60_000)).toBe(true);
        expect(now.completeResponse('k', claim.token, 200, {}, 'x', 60_000)).toBe(true);
        // Sent again by its run: taken again, nothing changed; a forged one still refused.
        expect(now.completeResponse('k', claim.token, 200, {}, 'y', 60_000)).toBe(true);
        for (const token of forged) expect(now.completeResponse('k', token, 200, {}, 'z', 60_000)).toBe(false);
        const found = now.claim('k', 'fp', 60_000);
        if (found.status !== 'completed') throw new Error(found.status);
        expect(keptBodyOf(found.record)).toBe('x');
        store.dispose();
      }),
      { numRuns: 300 },
    );
  });

  it("refuses an older claim's token after a takeover", async () => {
    let t = 0;
    const clock = { now: () => t, setTimeout: () => 0 as never, clearTimeout: () => {} } as never;
    const store = memoryStore({ clock });
    const now = nowOf(store);
    const first = now.claim('k', 'fp', 100);
    if (first.status !== 'claimed') throw new Error(first.status);
    t += 150; // its lease ran out
    const second = now.claim('k', 'fp', 100);
    if (second.status !== 'claimed' || !second.takeover) throw new Error(second.status);
    expect(now.completeResponse('k', first.token, 200, {}, 'old', 60_000)).toBe(false);
    expect(await store.release('k', tokenText(first.token))).toBe(false);
    expect(now.completeResponse('k', second.token, 200, {}, 'new', 60_000)).toBe(true);
    const found = now.claim('k', 'fp', 100);
    if (found.status !== 'completed') throw new Error(found.status);
    expect(keptBodyOf(found.record)).toBe('new');
    store.dispose();
  });
});

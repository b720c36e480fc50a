import { afterEach, describe, expect, it } from 'vitest';
import { pickHeaders, replayableHeaders } from '../src/http/index.js';
import { memoryStore } from '../src/index.js';

// Header names are read with for-in (no array of names per response): only own names count. A
// name some library put on Object.prototype (enumerable) is no header of the response.
const polluted = Object.prototype as Record<string, unknown>;
afterEach(() => {
  delete polluted.location;
  delete polluted.etag;
});

describe('response headers read by their own names only', () => {
  it('pickHeaders and a stored record ignore an enumerable name on Object.prototype', async () => {
    // Made before: its options are checked strictly, and would name the polluted keys.
    const store = memoryStore();
    polluted.location = '/attacker';
    polluted.etag = ['not', 'a', 'string', 1];
    const picked = pickHeaders({ 'Content-Type': 'application/json' }, replayableHeaders([]));
    expect(Object.keys(picked)).toEqual(['content-type']);
    const claim = await store.claim('k', 'f', 10_000);
    if (claim.status !== 'claimed') throw new Error(claim.status);
    const body = Buffer.from('{}');
    // A value that is not a string on the prototype would make the check throw if it were read.
    await expect(
      store.complete('k', claim.token, { kind: 'response', status: 201, headers: { a: 'b' }, body }, 60_000),
    ).resolves.toBe(true);
    const again = await store.claim('k', 'f', 10_000);
    if (again.status !== 'completed' || again.record.outcome.kind !== 'response') throw new Error(again.status);
    expect(Object.keys(again.record.outcome.headers)).toEqual(['a']);
    expect(Object.hasOwn(again.record.outcome.headers, 'location')).toBe(false);
    store.dispose();
  });
});

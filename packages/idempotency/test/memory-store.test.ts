import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type ClaimResult, memoryStore } from '../src/index.js';
import { inProcess, keptBodyOf, type NowClaimResult, storeToken } from '../src/memory-store.js';
import { storeContract } from './contract.js';

storeContract('memoryStore', () => {
  const clock = new ManualClock(1_000_000);
  return { store: memoryStore({ clock }), elapse: (ms) => clock.advance(ms), lease: 1_000 };
});

function token(result: ClaimResult | NowClaimResult): string {
  if (result.status !== 'claimed') throw new Error(`expected claimed, got ${result.status}`);
  return storeToken(result.token);
}

describe('memoryStore()', () => {
  it('stays within maxEntries after 1,000,000 unique keys, keeping the most recently used', async () => {
    const clock = new ManualClock();
    const store = memoryStore({ maxEntries: 1_000, clock });
    for (let i = 0; i < 1_000_000; i++) {
      const key = `order-${i}`;
      const result = await store.claim(key, 'fp', 60_000);
      await store.complete(key, token(result), { kind: 'value', value: i }, 3_600_000);
    }
    expect(store.size).toBe(1_000);
    expect((await store.claim('order-999999', 'fp', 60_000)).status).toBe('completed');
    expect((await store.claim('order-999000', 'fp', 60_000)).status).toBe('completed');
    expect((await store.claim('order-998999', 'fp', 60_000)).status).toBe('claimed'); // evicted: runs again
    store.dispose();
  }, 60_000);

  it('evicts the least recently used record first: a replay counts as a use', async () => {
    const clock = new ManualClock();
    const store = memoryStore({ maxEntries: 3, clock });
    for (const key of ['a', 'b', 'c']) {
      await store.complete(key, token(await store.claim(key, 'fp', 1_000)), { kind: 'value', value: key }, 60_000);
    }
    expect((await store.claim('a', 'fp', 1_000)).status).toBe('completed'); // a is now the most recent
    await store.claim('d', 'fp', 1_000);
    expect((await store.claim('a', 'fp', 1_000)).status).toBe('completed');
    expect((await store.claim('b', 'fp', 1_000)).status).toBe('claimed'); // b was the oldest
    store.dispose();
  });

  it('never evicts a running claim (that would let a duplicate run); full of them, a claim fails with E_STORE_UNAVAILABLE', async () => {
    const clock = new ManualClock();
    const store = memoryStore({ maxEntries: 2, clock });
    await store.claim('running-1', 'fp', 10_000);
    await store.claim('running-2', 'fp', 10_000);
    await expect(store.claim('third', 'fp', 10_000)).rejects.toMatchObject({
      code: 'E_STORE_UNAVAILABLE',
      message: 'memoryStore: claim of key "third" failed: full: all 2 records are running claims',
    });
    expect((await store.claim('running-1', 'fp', 10_000)).status).toBe('inProgress');
    // Once a lease has run out, its record may go.
    await clock.advance(10_001);
    expect((await store.claim('third', 'fp', 10_000)).status).toBe('claimed');
    store.dispose();
  });

  it('sweeps expired records on its interval and leaves no timer behind once empty', async () => {
    const clock = new ManualClock();
    const store = memoryStore({ sweepInterval: 1_000, clock });
    for (let i = 0; i < 10; i++) {
      const key = `k${i}`;
      await store.complete(key, token(await store.claim(key, 'fp', 100)), { kind: 'value', value: i }, 500);
    }
    await store.claim('abandoned', 'fp', 100); // kept for two leases, then swept
    expect(store.snapshot()).toMatchObject({ entries: 11, maxEntries: 10_000, inProgress: 1 });
    await clock.advance(1_000);
    expect(store.size).toBe(0);
    expect(clock.pending).toBe(0);
    store.dispose();
  });

  it('does not keep the process alive: its sweep timer is unref’d', () => {
    const script = `
      import { memoryStore } from ${JSON.stringify(fileURLToPath(new URL('../src/index.ts', import.meta.url)))};
      const store = memoryStore();
      const claim = await store.claim('k', 'fp', 60_000);
      await store.complete('k', claim.token, { kind: 'value', value: 1 }, 3_600_000);
      console.log('done', store.size);
    `;
    const child = spawnSync(
      process.execPath,
      ['--conditions=@holdfast/source', '--import', 'tsx', '--input-type=module', '-e', script],
      { encoding: 'utf8', timeout: 20_000 },
    );
    expect(child.stderr).toBe('');
    expect(child.stdout.trim()).toBe('done 1');
    expect(child.status).toBe(0);
  }, 30_000);

  it('refuses use after dispose() with E_DISPOSED', async () => {
    const store = memoryStore({ clock: new ManualClock() });
    store.dispose();
    await expect(store.claim('k', 'fp', 1_000)).rejects.toMatchObject({ code: 'E_DISPOSED' });
  });

  it('names the bad option', () => {
    expect(() => memoryStore({ maxEntries: 0 })).toThrow(/memoryStore: maxEntries .*\(got 0\)/);
    expect(() => memoryStore({ sweepInterval: -5 })).toThrow(/sweepInterval/);
    expect(() => memoryStore({ maxEntry: 5 } as never)).toThrow('memoryStore: maxEntry is not a known option (got 5)');
  });
});

describe('memoryStore() records', () => {
  // Every byte value, in bodies on both sides of the size under which a body is kept as a string.
  const bodies = [0, 1, 95, 96, 97, 256, 300].map((n) =>
    Buffer.from(Array.from({ length: n }, (_, i) => (i * 97 + n) % 256)),
  );

  it('replays every byte of a response body, short or long, and hands out copies its reader may change', async () => {
    const store = memoryStore({ clock: new ManualClock() });
    const now = inProcess(store);
    if (now === undefined) throw new Error('a memoryStore answers in this process');
    for (const [i, body] of bodies.entries()) {
      const headers = { 'content-type': 'application/octet-stream' };
      // As the middleware hands a response over (owned), and as any caller completes one (copied).
      const owned = Buffer.from(body);
      now.completeResponse(`o${i}`, token(now.claim(`o${i}`, 'fp', 1_000)), 201, headers, owned, 60_000);
      const given = new Uint8Array(body);
      await store.complete(
        `c${i}`,
        token(await store.claim(`c${i}`, 'fp', 1_000)),
        { kind: 'response', status: 201, headers, body: given },
        60_000,
      );
      given.fill(0); // the caller reuses its buffer: the record keeps its own copy
      for (const key of [`o${i}`, `c${i}`]) {
        const copy = await store.claim(key, 'fp', 1_000);
        const shared = now.claim(key, 'fp', 1_000);
        for (const result of [copy, shared]) {
          if (result.status !== 'completed') throw new Error(result.status);
          // The store's own record (its call without a promise) holds its outcome; a copy, apart.
          const outcome = 'outcome' in result.record ? result.record.outcome : result.record;
          if (outcome.kind !== 'response') throw new Error(outcome.kind);
          // The store's own record keeps a short body as a string of its bytes.
          const kept = 'outcome' in result.record ? outcome.body : keptBodyOf(result.record);
          expect((typeof kept === 'string' ? Buffer.from(kept, 'latin1') : Buffer.from(kept)).equals(body)).toBe(true);
          expect(outcome.status).toBe(201);
        }
        if (shared.status !== 'completed' || shared.record.kind !== 'response') throw new Error(shared.status);
        expect(typeof keptBodyOf(shared.record)).toBe(body.length <= 96 ? 'string' : 'object');
        // Answered again without a copy: the same record, read and never changed.
        const kept = now.claim(key, 'fp', 1_000);
        expect(kept.status === 'completed' && kept.record).toBe(shared.record);
        // A copy handed out by claim() is the caller's to change: the record is not.
        if (copy.status === 'completed' && copy.record.outcome.kind === 'response')
          (copy.record.outcome.body as Uint8Array).fill(1);
        const again = await store.claim(key, 'fp', 1_000);
        if (again.status !== 'completed' || again.record.outcome.kind !== 'response') throw new Error(again.status);
        expect(Buffer.from(again.record.outcome.body).equals(body)).toBe(true);
      }
    }
    store.dispose();
  });

  it('keeps deadlines in whole ms on a monotonic clock with fractions of a ms: a lease ends at most 1 ms late, never early; a record is forgotten at most 1 ms early, never late', async () => {
    const clock = new ManualClock(1_000_000);
    let mono = 0.5;
    const store = memoryStore({ clock: Object.assign(clock, { monotonic: () => mono }) });
    token(await store.claim('k', 'fp', 1_000));
    mono = 1_000.4;
    expect((await store.claim('k', 'fp', 1_000)).status).toBe('inProgress');
    mono = 1_000.7; // 1,000.2 ms later: the lease (1,000 ms) still holds
    expect((await store.claim('k', 'fp', 1_000)).status).toBe('inProgress');
    mono = 1_001.6;
    const taken = token(await store.claim('k', 'fp', 1_000));
    await store.complete('k', taken, { kind: 'value', value: 1 }, 1_000);
    mono = 2_000.9; // 999.3 ms into its 1,000 ms TTL
    expect((await store.claim('k', 'fp', 1_000)).status).toBe('completed');
    mono = 2_001; // 999.4 ms: its TTL, rounded down, has run out
    expect((await store.claim('k', 'fp', 1_000)).status).toBe('claimed');
    store.dispose();
  });
});

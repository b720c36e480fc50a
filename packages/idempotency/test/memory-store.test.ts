import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { type ClaimResult, memoryStore } from '../src/index.js';
import { storeContract } from './contract.js';

storeContract('memoryStore', () => {
  const clock = new ManualClock(1_000_000);
  return { store: memoryStore({ clock }), elapse: (ms) => clock.advance(ms), lease: 1_000 };
});

function token(result: ClaimResult): string {
  if (result.status !== 'claimed') throw new Error(`expected claimed, got ${result.status}`);
  return result.token;
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

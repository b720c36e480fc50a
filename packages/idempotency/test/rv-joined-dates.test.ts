import { ManualClock } from '@holdfast/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { memoryStore } from '../src/index.js';
import type { ClaimResult } from '../src/store.js';

// Review of #19 (#wall): a record's createdAt/completedAt must be the wall clock a user reads,
// also right after a test leaves fake timers for real ones (a suite's afterEach does this between
// tests sharing one store), and exactly a ManualClock's reading.

afterEach(() => {
  vi.useRealTimers();
});

function token(result: ClaimResult): string {
  if (result.status !== 'claimed') throw new Error(result.status);
  return result.token;
}

async function createdAt(store: ReturnType<typeof memoryStore>, key: string): Promise<number> {
  const claimed = token(await store.claim(key, 'fp', 60_000));
  await store.complete(key, claimed, { kind: 'aborted' }, 60_000);
  const found = await store.claim(key, 'fp', 60_000);
  if (found.status !== 'completed') throw new Error(found.status);
  return found.record.createdAt;
}

describe('memoryStore record dates across fake and real timers', () => {
  it.each([
    ['every timer faked', undefined],
    ['Date alone faked', { toFake: ['Date'] }],
    ['performance left real', { toFake: ['Date', 'setTimeout', 'clearTimeout'] }],
  ] as const)(
    'are the real Date.now() again at once when fake timers (%s) are left for real ones',
    async (_, config) => {
      const store = memoryStore();
      vi.useFakeTimers(config as Parameters<typeof vi.useFakeTimers>[0]);
      vi.setSystemTime(946_684_800_000); // 2000-01-01
      expect(await createdAt(store, 'faked')).toBe(946_684_800_000);
      vi.useRealTimers();
      const before = Date.now();
      const at = await createdAt(store, 'real');
      const after = Date.now();
      expect(at).toBeGreaterThanOrEqual(before - 1);
      expect(at).toBeLessThanOrEqual(after);
      store.dispose();
    },
  );

  it('are the faked Date at once when fake timers are installed after real readings', async () => {
    const store = memoryStore();
    await createdAt(store, 'real');
    vi.useFakeTimers();
    vi.setSystemTime(4_102_444_800_000); // 2100-01-01
    expect(await createdAt(store, 'faked')).toBe(4_102_444_800_000);
    vi.setSystemTime(946_684_800_000);
    expect(await createdAt(store, 'back')).toBe(946_684_800_000);
    store.dispose();
  });

  it('are exactly a ManualClock reading, fractions and jumps included', async () => {
    const clock = new ManualClock(1_700_000_000_000.5);
    const store = memoryStore({ clock });
    expect(await createdAt(store, 'a')).toBe(1_700_000_000_000.5);
    await clock.advance(1_234);
    expect(await createdAt(store, 'b')).toBe(1_700_000_001_234.5);
    store.dispose();
  });
});

import { HoldfastConfigError } from '@holdfast/core';
import { retryBudget } from '@holdfast/retry';
import { describe, expect, it } from 'vitest';
import { failover } from '../src/index.js';
import { harness } from './support.js';

const failing = (tried: string[]) => (e: { name: string }) => {
  tried.push(e.name);
  return Promise.reject(new Error(`${e.name} is down`));
};

describe("a call's own retry", () => {
  it("replaces the set's: its maxAttempts, its retryOn, its budget", async () => {
    const { clock, bus } = harness();
    const set = failover({
      clock,
      bus,
      endpoints: ['a', 'b', 'c', 'd'],
      ejection: false,
      retry: { maxAttempts: 4, idempotent: true },
    });
    const tried: string[] = [];
    const budget = retryBudget({ ratio: 1, minPerSecond: 0, clock });
    await expect(
      set.execute(failing(tried), { retry: { maxAttempts: 2, retryOn: () => true, budget } }),
    ).rejects.toThrow('is down');
    expect(tried.length).toBe(2);
    expect((budget.snapshot() as { calls: number }).calls).toBe(1);
    tried.length = 0;
    await expect(set.execute(failing(tried), { retry: false })).rejects.toThrow('is down');
    expect(tried.length).toBe(1);
    tried.length = 0;
    await expect(
      set.execute(failing(tried), { retry: { maxAttempts: 4, retryOn: () => false, budget: false } }),
    ).rejects.toThrow();
    expect(tried.length).toBe(1);
    tried.length = 0;
    await expect(set.execute(failing(tried))).rejects.toThrow('is down');
    expect(tried.length).toBe(4); // the set's own, for a call that brings none
    set.dispose();
  });

  it('is checked, and a bad one named, before any endpoint is touched', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, endpoints: ['a'] });
    const tried: string[] = [];
    const bad = { maxAttempts: 0, retryOn: () => true, budget: false as const };
    await expect(set.execute(failing(tried), { retry: bad })).rejects.toBeInstanceOf(HoldfastConfigError);
    await expect(set.execute(failing(tried), { retry: bad })).rejects.toThrow(
      'retry.maxAttempts must be an integer >= 1',
    );
    expect(tried).toEqual([]);
    set.dispose();
  });
});

describe("a call's own ignore", () => {
  it('keeps what it names from counting against the endpoint, whatever isFailure says; a throwing one ignores nothing', async () => {
    const { clock, bus } = harness();
    const set = failover({ clock, bus, endpoints: ['a', 'b'], ejection: { consecutiveFailures: 2 }, retry: false });
    const mine = new Error('refused here, never sent');
    for (let i = 0; i < 6; i++) {
      await expect(set.execute(() => Promise.reject(mine), { ignore: (e) => e === mine })).rejects.toBe(mine);
    }
    expect(set.snapshot().endpoints.map((e) => e.ejection)).toEqual(['none', 'none']);
    const broken = () => {
      throw new Error('judge bug');
    };
    for (let i = 0; i < 4; i++) {
      await expect(set.execute(() => Promise.reject(mine), { ignore: broken })).rejects.toBe(mine);
    }
    expect(set.snapshot().endpoints.some((e) => e.ejection === 'ejected')).toBe(true);
    set.dispose();
  });
});

/**
 * An outside hostile review of hedge(), fallback(), timeout(), pipeline() and the bus: each
 * test attacks one thing production would, and asserts behaviour and counts, never timings.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type CallContext,
  createBus,
  type FallbackCause,
  fallback,
  type HoldfastEvent,
  hedge,
  ManualClock,
  pipeline,
  TimeoutError,
  timeout,
} from '../src/index.js';

const never = () => new Promise<never>(() => {});

describe('fallback: the fallback itself fails', () => {
  it('a `to` that throws on a refused result is called once, and its error reaches the caller', async () => {
    const bus = createBus();
    const events: HoldfastEvent[] = [];
    bus.on('*', (e) => events.push(e));
    const causes: FallbackCause['reason'][] = [];
    const policy = fallback({
      bus,
      onResult: (r) => r === 'stale',
      to: (cause) => {
        causes.push(cause.reason);
        if (cause.reason === 'result') throw new Error('cache down');
        return 'served from the failure branch';
      },
    });
    await expect(policy.execute(() => 'stale')).rejects.toThrow('cache down');
    expect(causes).toEqual(['result']);
    expect(events.filter((e) => e.type === 'fallback')).toHaveLength(1);
  });

  it('a `to` that returns a rejected promise on a refused result: the rejection reaches the caller, `to` runs once', async () => {
    let calls = 0;
    const policy = fallback({
      bus: createBus(),
      onResult: () => true,
      to: () => {
        calls++;
        return Promise.reject(new Error('async cache down'));
      },
    });
    await expect(policy.execute(() => 'x')).rejects.toThrow('async cache down');
    expect(calls).toBe(1);
  });

  it('an `onResult` predicate that throws is a bug to surface, not a failure to paper over', async () => {
    let replaced = 0;
    const policy = fallback({
      bus: createBus(),
      onResult: () => {
        throw new Error('predicate bug');
      },
      to: () => {
        replaced++;
        return 'fallback';
      },
    });
    await expect(policy.execute(() => 'fine')).rejects.toThrow('predicate bug');
    expect(replaced).toBe(0);
  });

  it('a `to` that throws (sync or async) on a failure: its error reaches the caller, `to` runs once', async () => {
    for (const to of [
      () => {
        throw new Error('to failed');
      },
      () => Promise.reject(new Error('to failed')),
    ]) {
      let calls = 0;
      const policy = fallback({
        bus: createBus(),
        to: () => {
          calls++;
          return to();
        },
      });
      await expect(
        policy.execute(() => {
          throw new Error('original');
        }),
      ).rejects.toThrow('to failed');
      expect(calls).toBe(1);
    }
  });
});

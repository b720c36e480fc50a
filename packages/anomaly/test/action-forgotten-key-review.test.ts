/**
 * An ejection outlives its key: the endpoint taken out gets no calls, so its key goes idle and is
 * forgotten long before the ejection runs out. The `restore` that ends it must still name the key
 * as its `eject` did (`#2` for a key that redacts like another), or a dashboard pairs it with the
 * other key, and never sees this ejection end.
 */
import { createBus, type EventOf, ManualClock } from '@holdfast/core';
import { failover } from '@holdfast/failover';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

describe('anomalyWatch: a restore after its key was forgotten (review)', () => {
  it("names the key as the eject did, '#2' included", async () => {
    const clock = new ManualClock(1_000_000);
    const bus = createBus({ onListenerError: () => {} });
    const actions: EventOf<'anomaly.action'>[] = [];
    bus.on('anomaly.action', (e) => void actions.push(e));
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    const api = failover({ name: 'api', clock, bus, policies: false, endpoints: names });
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1_000,
      raiseAfter: 1,
      idleAfter: 3,
      actions: { eject: { failover: api, duration: 30_000 } },
    });
    cleanups.push(
      () => api.dispose(),
      () => watch.dispose(),
    );
    // Two users on one host: the second key on c shows as the first (u:p1, seen first) does, with '#2'.
    const second = 'postgres://u:p2@h/c';
    const interval = (slow: boolean, withSecond = true) => {
      for (const n of names)
        for (let i = 0; i < 20; i++) watch.observe(`postgres://u:p1@h/${n}`, 20 + (i % 3), 'success');
      if (withSecond) for (let i = 0; i < 20; i++) watch.observe(second, (slow ? 400 : 20) + (i % 3), 'success');
      watch.flush();
    };
    for (let i = 0; i < 40; i++) interval(false);
    interval(true);
    const ejected = actions.find((e) => e.action === 'eject' && e.taken);
    expect(ejected?.key).toBe('postgres://***@h/c#2');
    // Taken out, the second key sees no calls: idle, then forgotten.
    for (let i = 0; i < 5; i++) {
      await clock.advance(1_000);
      interval(false, false);
    }
    expect(watch.snapshot().keys.map((k) => k.key)).not.toContain('postgres://***@h/c#2');
    await clock.advance(30_000);
    const restored = actions.find((e) => e.action === 'restore');
    expect({ key: restored?.key, target: restored?.target }).toEqual({ key: ejected?.key, target: 'c' });
  });
});

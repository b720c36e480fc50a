/**
 * Review: a listener of `anomaly.action` that disposes the watch (an operator's "stop acting"
 * hook, a test's teardown) must stop it acting. The action under way went on: with `eject` and
 * `openBreaker` both set, the breaker was opened by a watch already disposed, and nothing of it
 * is undone by dispose().
 */
import { createBus, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

describe('anomalyWatch disposed by a listener of its own action (review)', () => {
  it('acts no further: no breaker opened, no ejection, after dispose()', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    const ejected: string[] = [];
    const opened: string[] = [];
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1000,
      raiseAfter: 1,
      actions: {
        eject: {
          failover: {
            name: 'api',
            endpoints: names.map((name) => ({ name })),
            eject: (name) => {
              ejected.push(name);
              return true;
            },
            restore: () => true,
          },
          endpointOf: (key) => key.slice('api/'.length),
        },
        openBreaker: { breakerOf: (key) => ({ name: key, open: () => void opened.push(key) }) },
      },
    });
    const actions: string[] = [];
    bus.on('anomaly.action', (e) => {
      actions.push(`${e.action} ${e.taken}`);
      watch.dispose();
    });
    for (let s = 0; s < 70 && actions.length === 0; s++) {
      for (const n of names) {
        const latency = s >= 35 && n === 'a' ? 300 : 20 + (s % 3);
        for (let i = 0; i < 10; i++) bus.emit({ type: 'breaker.success', source: `api/${n}`, time: 0, latency });
      }
      await clock.advance(1000);
    }
    // The first action told was the eject; the listener disposed the watch there.
    expect(actions[0]).toBe('eject true');
    expect(ejected).toEqual(['a']);
    expect(opened).toEqual([]);
  });

  it('disposed while the set takes the endpoint out (a failover.eject listener): it is put back, as dispose() promises', async () => {
    const clock = new ManualClock(0);
    const bus = createBus();
    const names = ['a', 'b', 'c', 'd', 'e', 'f'];
    const out = new Set<string>();
    let ejects = 0;
    let onEject = () => {};
    const watch = anomalyWatch({
      bus,
      clock,
      interval: 1000,
      raiseAfter: 1,
      actions: {
        eject: {
          failover: {
            name: 'api',
            endpoints: names.map((name) => ({ name })),
            // A real set tells its own failover.eject on the bus before it returns.
            eject: (name) => {
              out.add(name);
              ejects++;
              onEject();
              return true;
            },
            restore: (name) => out.delete(name),
          },
          endpointOf: (key) => key.slice('api/'.length),
        },
      },
    });
    onEject = () => watch.dispose();
    for (let s = 0; s < 70 && ejects === 0; s++) {
      for (const n of names) {
        const latency = s >= 35 && n === 'a' ? 300 : 20 + (s % 3);
        for (let i = 0; i < 10; i++) bus.emit({ type: 'breaker.success', source: `api/${n}`, time: 0, latency });
      }
      await clock.advance(1000);
    }
    expect(ejects).toBe(1);
    expect([...out]).toEqual([]);
    expect(watch.snapshot().ejected).toEqual([]);
  });
});

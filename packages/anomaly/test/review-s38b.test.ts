/**
 * Outside review (s38b) of 93d22670: each `it` is one bug a user would hit, failing on the code as reviewed.
 */
import { createBus, ManualClock, shownKey } from '@holdfast/core';
import { afterEach, describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

const cleanups: (() => unknown)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

function watchOn(clock: ManualClock, extra: Record<string, unknown> = {}) {
  const bus = createBus({ onListenerError: () => {} });
  const watch = anomalyWatch({ bus, clock, interval: 1_000, ...extra });
  cleanups.push(() => watch.dispose());
  return watch;
}

describe('review s38b: keys as shown (core shownKey, used by the anomaly watch and the breaker registry)', () => {
  it('two connection-string keys for two databases are shown apart: ";Password=x;Database=orders" keeps its Database', () => {
    // hideCredentials alone (the breaker before 93d22670) and the watch's old shown() both gave
    // 'Server=db;Password=***;Database=orders': the new secret-parameter pass eats to the end.
    expect(shownKey('Server=db;Password=x;Database=orders')).toBe('Server=db;Password=***;Database=orders');
    const clock = new ManualClock(1_000_000);
    const watch = watchOn(clock);
    for (const db of ['orders', 'users'])
      for (let i = 0; i < 10; i++) watch.observe(`Server=db;Password=x;Database=${db}`, 20, 'success');
    watch.flush();
    const shown = watch.snapshot().keys.map((k) => k.key);
    expect(new Set(shown).size).toBe(2);
  });

  it("a key with a secret in a URL fragment (#jwt=, OAuth's implicit flow) no longer shows it in the watch's snapshot", () => {
    // The watch's shown() before 93d22670 (Redactor.text) hid it: '#jwt=***'.
    const clock = new ManualClock(1_000_000);
    const watch = watchOn(clock);
    const key = 'https://app.example/callback#jwt=SECRET-JWT';
    for (let i = 0; i < 10; i++) watch.observe(key, 20, 'success');
    watch.flush();
    expect(JSON.stringify(watch.snapshot())).not.toContain('SECRET-JWT');
  });
});

describe('review s38b: anomalyWatch intervals', () => {
  it('flush() calls a few ms apart (no interval, throughput NaN) count as idle intervals and forget a key busy 20 ms ago', async () => {
    const clock = new ManualClock(1_000_000);
    const watch = watchOn(clock, { idleAfter: 2 });
    for (let i = 0; i < 10; i++) watch.observe('db', 20, 'success');
    await clock.advance(1_000); // the timer's flush: one whole interval, rated and scored
    for (let i = 0; i < 10; i++) watch.observe('db', 20, 'success');
    await clock.advance(10);
    watch.flush(); // 10 ms after: no interval to rate (NaN), its calls carried to the next
    await clock.advance(10);
    watch.flush(); // 20 ms after: still no interval
    await clock.advance(10);
    watch.flush();
    // idleAfter is 2 *intervals* (2 s) without calls; 'db' had 10 calls 30 ms ago.
    expect(watch.snapshot().keys.map((k) => k.key)).toContain('db');
  });
});

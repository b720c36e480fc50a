/**
 * Review by an outside user: anomalyWatch() against the rest of holdfast. A breaker, a fetch or a
 * failover set used after dispose() throws DisposedError (E_DISPOSED); a bad option's error names
 * the value that was given, not its type.
 */
import { createBus, DisposedError, HoldfastConfigError, ManualClock } from '@holdfast/core';
import { describe, expect, it } from 'vitest';
import { anomalyWatch } from '../src/index.js';

function watch() {
  const bus = createBus({ onListenerError: () => {} });
  return { bus, watch: anomalyWatch({ bus, clock: new ManualClock(0), interval: 1000, name: 'w' }) };
}

describe('anomalyWatch used after dispose() (review)', () => {
  it('observe() throws DisposedError, as flush() does and as a disposed breaker does', () => {
    const { watch: w } = watch();
    w.observe('api', 10, 'success');
    w.dispose();
    expect(() => w.observe('api', 10, 'success')).toThrow(DisposedError);
    expect(() => w.observe('api', 10, 'success')).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    expect(() => w.observe('api', 10, 'success')).toThrow('w: used after dispose()');
    expect(() => w.flush()).toThrow(expect.objectContaining({ code: 'E_DISPOSED' }));
    // What it counted is not changed by the refused call; snapshot() and dispose() still answer.
    expect(w.snapshot().keys).toEqual([]);
    expect(() => w.dispose()).not.toThrow();
  });

  it('the calls it was watching on the bus after dispose() are not counted, and nothing throws', () => {
    const errors: unknown[] = [];
    const bus = createBus({ onListenerError: (e) => errors.push(e) });
    const w = anomalyWatch({ bus, clock: new ManualClock(0), interval: 1000 });
    w.dispose();
    bus.emit({ type: 'breaker.success', source: 'api', time: 0, latency: 10 });
    expect(errors).toEqual([]);
    expect(w.snapshot().keys).toEqual([]);
  });

  it('a listener that disposes the watch while the bus is still handing out a breaker event: no listener error', () => {
    const errors: unknown[] = [];
    const bus = createBus({ onListenerError: (e) => errors.push(e) });
    let w: ReturnType<typeof anomalyWatch> | undefined;
    bus.on('breaker.success', () => w?.dispose());
    w = anomalyWatch({ bus, clock: new ManualClock(0), interval: 1000 });
    bus.emit({ type: 'breaker.success', source: 'api', time: 0, latency: 10 });
    expect(errors).toEqual([]);
  });
});

describe('anomalyWatch.observe() refusing a key (review)', () => {
  it('names the value given, not its type', () => {
    const { watch: w } = watch();
    const call = () => w.observe(42 as unknown as string, 10, 'success');
    expect(call).toThrow(HoldfastConfigError);
    expect(call).toThrow('w.observe: key must be a string (got 42)');
    expect(() => w.observe(undefined as unknown as string, 10, 'success')).toThrow(
      'w.observe: key must be a string (got undefined)',
    );
    w.dispose();
  });

  it('the value it names shows no password', () => {
    const { watch: w } = watch();
    let message = '';
    try {
      w.observe({ url: 'https://user:hunter2@db.example/x' } as unknown as string, 10, 'success');
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^w\.observe: key must be a string \(got /);
    expect(message).not.toContain('hunter2');
    w.dispose();
  });
});

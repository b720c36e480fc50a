import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { describe, expect, it, vi } from 'vitest';
import { bus, createBus, type HoldfastEvent } from '../src/index.js';

const open = (source = 'payments'): HoldfastEvent => ({
  type: 'breaker.open',
  source,
  time: 1,
  reason: 'failureRate',
  failureRate: 0.6,
  slowCallRate: 0,
  retryAt: 30_001,
  opens: 1,
  code: 'ECONNRESET',
});

describe('bus', () => {
  it('delivers an event to listeners of its type and to * listeners, in subscription order', () => {
    const b = createBus();
    const seen: string[] = [];
    b.on('breaker.open', (e) => seen.push(`typed:${e.source}:${e.failureRate}`));
    b.on('*', (e) => seen.push(`any:${e.type}`));
    b.on('retry.attempt', () => seen.push('wrong type'));
    b.emit(open());
    expect(seen).toEqual(['typed:payments:0.6', 'any:breaker.open']);
  });

  it('on() returns an unsubscribe function; calling it twice is harmless', () => {
    const b = createBus();
    const listener = vi.fn();
    const off = b.on('breaker.open', listener);
    b.emit(open());
    off();
    off();
    b.emit(open());
    expect(listener).toHaveBeenCalledTimes(1);
    expect(b.wants('breaker.open')).toBe(false);
  });

  it('once() delivers one event, and can be cancelled before it fires', () => {
    const b = createBus();
    const first = vi.fn();
    const cancelled = vi.fn();
    b.once('breaker.open', first);
    b.once('*', cancelled)();
    b.emit(open('a'));
    b.emit(open('b'));
    expect(first).toHaveBeenCalledTimes(1);
    expect(first.mock.calls[0]?.[0]).toMatchObject({ source: 'a' });
    expect(cancelled).not.toHaveBeenCalled();
  });

  it('wants() is false with no listener and true with a typed, a * or a diagnostics_channel subscriber', () => {
    const b = createBus();
    expect(b.wants('retry.attempt')).toBe(false);
    const offTyped = b.on('retry.attempt', () => {});
    expect(b.wants('retry.attempt')).toBe(true);
    expect(b.wants('retry.giveUp')).toBe(false);
    offTyped();
    const offAny = b.on('*', () => {});
    expect(b.wants('retry.giveUp')).toBe(true);
    offAny();
    const onMessage = () => {};
    subscribe('holdfast:retry.giveUp', onMessage);
    try {
      expect(b.wants('retry.giveUp')).toBe(true);
    } finally {
      unsubscribe('holdfast:retry.giveUp', onMessage);
    }
    expect(b.wants('retry.giveUp')).toBe(false);
  });

  it('forwards events to node:diagnostics_channel as holdfast:<type>', () => {
    const b = createBus();
    const received: unknown[] = [];
    const onMessage = (message: unknown) => received.push(message);
    subscribe('holdfast:breaker.open', onMessage);
    try {
      b.emit(open());
    } finally {
      unsubscribe('holdfast:breaker.open', onMessage);
    }
    expect(received).toEqual([open()]);
  });

  it('a listener that throws is reported and the emit goes on to the next listener', () => {
    const errors: unknown[] = [];
    const b = createBus({ onListenerError: (error, event) => errors.push([error, event.type]) });
    const after = vi.fn();
    b.on('breaker.open', () => {
      throw new Error('listener bug');
    });
    b.on('breaker.open', after);
    expect(() => b.emit(open())).not.toThrow();
    expect(after).toHaveBeenCalledTimes(1);
    expect(errors).toEqual([[new Error('listener bug'), 'breaker.open']]);
  });

  it('by default a throwing listener becomes one process warning, not a crash', () => {
    const b = createBus();
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    try {
      b.on('breaker.open', () => {
        throw new Error('boom');
      });
      b.emit(open());
      b.emit(open());
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0]?.[0])).toContain('breaker.open');
      expect(warn.mock.calls[0]?.[1]).toMatchObject({ code: 'HOLDFAST_LISTENER_ERROR' });
    } finally {
      warn.mockRestore();
    }
  });

  it('a reporter that throws does not break the emit either', () => {
    const b = createBus({
      onListenerError: () => {
        throw new Error('reporter bug');
      },
    });
    b.on('breaker.open', () => {
      throw new Error('listener bug');
    });
    expect(() => b.emit(open())).not.toThrow();
  });

  it('unsubscribing during an emit does not skip the listeners after it', () => {
    const b = createBus();
    const seen: number[] = [];
    const offFirst = b.on('breaker.open', () => {
      seen.push(1);
      offFirst();
    });
    b.on('breaker.open', () => seen.push(2));
    b.emit(open());
    b.emit(open());
    expect(seen).toEqual([1, 2, 2]);
  });

  it('a listener removed by an earlier listener during an emit is not called with it', () => {
    const b = createBus();
    const seen: string[] = [];
    let offTyped = () => {};
    let offAny = () => {};
    b.on('breaker.open', () => {
      seen.push('first');
      offTyped();
      offAny();
    });
    offTyped = b.on('breaker.open', () => seen.push('typed'));
    offAny = b.on('*', () => seen.push('any'));
    b.emit(open());
    expect(seen).toEqual(['first']);
  });

  it('an event emitted by a listener goes out after every listener saw the current one, before emit() returns', () => {
    const b = createBus();
    const seen: string[] = [];
    b.on('breaker.open', (e) => {
      seen.push(`A:${e.source}`);
      if (e.source === 'first') {
        b.emit(open('second'));
        b.emit(open('third'));
        seen.push('A:emitted');
      }
    });
    b.on('breaker.open', (e) => seen.push(`B:${e.source}`));
    b.on('*', (e) => seen.push(`*:${e.source}`));
    b.emit(open('first'));
    seen.push('returned');
    expect(seen).toEqual([
      'A:first',
      'A:emitted',
      'B:first',
      '*:first',
      'A:second',
      'B:second',
      '*:second',
      'A:third',
      'B:third',
      '*:third',
      'returned',
    ]);
  });

  it('a listener that re-emits every event it gets is cut off and reported, not an endless loop', () => {
    const errors: unknown[] = [];
    const b = createBus({ onListenerError: (error) => errors.push(error) });
    let calls = 0;
    b.on('breaker.open', (e) => {
      calls++;
      b.emit(e);
    });
    b.emit(open());
    expect(calls).toBe(10_001); // the first event and 10,000 queued behind it
    expect(errors).toHaveLength(1);
    expect(String(errors[0])).toMatch(/over 10000 events emitted by listeners in one emit, dropped/);
    // The bus is usable afterwards: nothing is left queued or marked as dispatching.
    const later = vi.fn();
    b.on('retry.attempt', later);
    b.emit({ ...open(), type: 'retry.attempt' } as never);
    expect(later).toHaveBeenCalledTimes(1);
  });

  it('rejects a listener that is not a function, naming the event', () => {
    expect(() => createBus().on('breaker.open', 42 as never)).toThrow(
      'bus.on("breaker.open"): listener must be a function',
    );
  });

  it('the global bus lives under a Symbol.for key that includes the major version', () => {
    const slot = (globalThis as Record<symbol, { bus: unknown; version: string }>)[Symbol.for('@holdfast/core/bus@0')];
    expect(slot?.bus).toBe(bus);
    expect(slot?.version).toMatch(/^0\./);
  });
});

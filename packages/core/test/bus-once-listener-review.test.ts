import { describe, expect, it } from 'vitest';
import { createBus } from '../src/index.js';

// bus.on() refuses a listener that is no function at once; bus.once() took it (its own wrapper is
// a function), and the mistake surfaced only when the event came, if ever, as a listener error
// (`listener is not a function`) far from the line that made it.
describe('bus.once() with a listener that is no function (review)', () => {
  it('throws a TypeError at once, naming the type, and subscribes nothing', () => {
    const errors: unknown[] = [];
    const b = createBus({ onListenerError: (error) => errors.push(error) });
    const once = b.once.bind(b) as (type: string, listener: unknown) => () => void;
    for (const listener of [undefined, 42, 'alert']) {
      expect(() => once('breaker.open', listener)).toThrow(/bus\.once\("breaker\.open"\): listener must be a function/);
    }
    expect(b.wants('breaker.open')).toBe(false);
    b.emit({ type: 'breaker.open', source: 's', time: 1 } as never);
    expect(errors).toEqual([]);
  });
});
